"""``--max-params PCT``: configurations whose trained parameters exceed PCT % of the backbone
are pruned before a trial starts.

A method's parameter count follows from its config alone (``trainers.params.count_for_config``
builds the model on the meta device: no weights, milliseconds). ``BudgetSearcher`` wraps the
searcher: each proposal over the budget is told back to it as pruned (Optuna learns to avoid
the region) and the next proposal is drawn, so Tune only ever starts configs within budget.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from ray.tune.search import Searcher

from spaces.auto import design_name, to_train_config


class ParamCounter:
    """% of the backbone a trial config trains (``stored_pct``), cached per distinct count key."""

    def __init__(self, specs, model: str | None) -> None:
        self.specs, self.model = specs, model
        self._model_config = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_model_config": None}

    def __call__(self, config: dict[str, Any]) -> float:
        from transformers import AutoConfig

        from trainers.model import default_model_path
        from trainers.params import count_for_config

        if self._model_config is None:
            self._model_config = AutoConfig.from_pretrained(self.model or default_model_path())
        return count_for_config(to_train_config(config), self.specs, self._model_config).stored_pct


class BudgetSearcher(Searcher):
    """Forwards to ``searcher``; proposals over ``max_pct`` are pruned there and replaced."""

    def __init__(self, searcher: Searcher, count: ParamCounter, max_pct: float,
                 log_path: str | None = None, max_tries: int = 500) -> None:
        super().__init__(metric=searcher.metric, mode=searcher.mode)
        self.searcher, self.count, self.max_pct, self.max_tries = searcher, count, max_pct, max_tries
        self.log_path = log_path
        """JSON lines, one per pruned proposal (design, % parameters, config); kept across --resume."""
        self.attempt_of: dict[str, str] = {}

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return self.searcher.set_search_properties(metric, mode, config, **spec)

    def suggest(self, trial_id: str):
        for k in range(self.max_tries):
            attempt = f"{trial_id}.{k}" if k else trial_id
            config = self.searcher.suggest(attempt)
            if config is None or config == Searcher.FINISHED:
                return config
            pct = self.count(config)
            if pct <= self.max_pct:
                self.attempt_of[trial_id] = attempt
                return config
            self.searcher.on_trial_complete(attempt, result=None, error=False)  # pruned, untrained
            flat = to_train_config(config).to_flat()
            if self.log_path:
                Path(self.log_path).parent.mkdir(parents=True, exist_ok=True)
                with open(self.log_path, "a") as f:
                    f.write(json.dumps({"design": design_name(flat), "stored_pct": pct, "config": flat},
                                       default=str) + "\n")
            print(f"[budget] pruned before training: {design_name(flat)} trains {pct:.3f}% of the "
                  f"backbone > --max-params {self.max_pct:g}%", flush=True)
        print(f"[budget] error: none of {self.max_tries} proposals fits --max-params {self.max_pct:g}%; "
              "the search stops here (raise the budget or narrow the space)", flush=True)
        return Searcher.FINISHED

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self.searcher.on_trial_result(self.attempt_of.get(trial_id, trial_id), result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self.searcher.on_trial_complete(self.attempt_of.get(trial_id, trial_id), result=result, error=error)

    # Tune saves a wrapper's own state (get_state) apart from the searcher it wraps (save).
    def get_state(self) -> dict:
        return copy.deepcopy({k: v for k, v in self.__dict__.items() if k != "searcher"})

    def set_state(self, state: dict) -> None:
        self.__dict__.update(state)

    def save(self, checkpoint_path: str) -> None:
        self.searcher.save(checkpoint_path)

    def restore(self, checkpoint_path: str) -> None:
        self.searcher.restore(checkpoint_path)
