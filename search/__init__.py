"""Ray Tune search over the trainer's hyperparameters (the only package that imports Ray).

Read in the order a search runs: ``settings`` (what defines a search; the flags of ``cli``
come from it) -> ``plan`` (every setting checked, spaces and data prepared; no Ray) ->
``driver`` (Ray: one Tune experiment per method, with a searcher from ``searchers`` and a
scheduler from ``schedulers``; ``trainable`` runs one trial through the trainer) ->
``callbacks`` (Tune events: terminal progress, MLflow trial runs) -> ``tracking`` (MLflow, its
one retry path) and ``results`` (tables, best configs) -> ``report/`` (the comparison report,
from MLflow alone). ``trial_outcome`` is the one definition of failed / stopped early /
finished; ``budget`` prunes configs over ``--max-params``.
"""
