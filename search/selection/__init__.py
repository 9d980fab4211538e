"""Selection: which candidate is the answer (issue 26). ``racing`` (Ray-free): the leading
candidates across methods get seeds in rounds and drop out when separably behind the leader;
``race_tune``: a round as one Tune experiment; ``seeds``: the confirmation seed blocks.

Not named ``select``: ``python search/run.py`` puts ``search/`` first on ``sys.path``, where a
``select`` package would hide the standard library's (which ``subprocess`` imports)."""
