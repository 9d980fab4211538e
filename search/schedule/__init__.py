"""Scheduling: which trials get compute. ``policies``: the stopping rules (ASHA, Hyperband
brackets, PASHA) without Ray; ``policy_scheduler``: one as a Tune scheduler; ``schedulers``: by
name; ``replay`` (with ``replay_table``, its table): the rules replayed offline (the command is
``search.report.replay``). For ``--budget`` (issue 26): ``budget``, durations and the trial-time
ledger; ``sizing``, the plan a budget buys; ``calibrate``, one measured run per method;
``methods``, which methods still receive trials; ``gate``, may a trial start; ``stops``, what
still runs past the budget or ``--deadline``; ``costs``, what the runs after the pool cost;
``pool``, one Tune searcher and scheduler over every method; ``stage``, the pool as a Tune
experiment; ``budget_replay``, the pool replayed over a recorded table. Ray only in ``pool``,
``stage``, ``stops``, ``policy_scheduler`` and what ``schedulers`` builds."""
