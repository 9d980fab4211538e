"""Ray Tune search over the trainer's hyperparameters (the only package that imports Ray).

``search/run.py`` is the CLI; ``registry`` builds searchers and schedulers by name,
``trainable`` runs one trial, ``tracking`` records the search in MLflow, ``driver`` runs it.
"""
