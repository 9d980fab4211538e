"""Scheduling: how trial-time is spent under ``--budget`` (issue 26). ``budget``: durations and
the trial-time ledger; ``sizing``: the plan a budget buys; ``methods``: which methods still
receive trials; ``gate``: may a trial start; ``budget_replay``: the pool replayed over a recorded
table; ``pool``: one Tune searcher and scheduler over every method; ``stage``: the pool
as a Tune experiment. Ray-free but ``pool`` and ``stage``."""
