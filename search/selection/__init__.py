"""Selection: which candidate is the answer. ``confirm``: ``--confirm``'s candidates, selection
reruns, pick and fresh-seed reruns; ``seeds``: the confirmation seed blocks (the race draws from
them too); ``heldout``: the test split, scored once per method. For ``--budget`` (issue 26):
``racing`` (Ray-free), the leading candidates across methods get seeds in rounds, the worse half
cut by ``halving``'s plan, and drop out when separably behind the leader; ``result``, what a race
found; ``race_tune``, a round as one Tune experiment.

Not named ``select``: ``python search/run.py`` puts ``search/`` first on ``sys.path``, where a
``select`` package would hide the standard library's (which ``subprocess`` imports)."""
