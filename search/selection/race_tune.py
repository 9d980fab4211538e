"""The Tune side of the race (``search.selection.racing``): each round is one Tune experiment
(``<experiment>-race-<k>``) of confirmation runs across methods: every survivor trained to the
full budget with the round's seed, scored once on the whole validation set with its per-row
predictions. Each run's seconds are charged to the budget's ledger; each run is recorded in MLflow
under its method's parent run (kind ``confirm``), as a per-method confirmation's are. A round that
runs past the budget left or ``--deadline`` is stopped (``search.schedule.stops.RunsStop``): the
slots it held are charged and the race ends without it.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from ray import tune

from search.callbacks import ByMethod, MlflowCallback, Progress, result_files
from search.experiments import restored, run_settings, trainable
from search.results import failed, write_json_atomic
from search.schedule.stops import RunsStop
from search.selection.racing import Candidate, Race
from search.stats import Outputs
from search.trainable import OUTPUTS, RUN_KEY, run_confirm, run_of

RACE_STATE = "race.json"


def save_race(out: Path, race: Race) -> None:
    write_json_atomic(out / RACE_STATE, race.state())


def load_race(out: Path) -> Race | None:
    path = out / RACE_STATE
    return Race.from_state(json.loads(path.read_text())) if path.exists() else None


def run_round(plan, data, tracker, parents: dict[str, str], concurrency: int, resuming: bool,
              race: Race, ledger) -> bool:
    """Run the race's open round (a new one, or the one ``--resume`` found open); False when
    interrupted. The race looks at its survivors after the round's last record."""
    runs = race.next_round()
    s = plan.settings
    if not runs:
        save_race(Path(s.out), race)  # why it ended (``next_round`` set it)
        return True
    name = f"{s.experiment}-race-{race.round}"
    fn = trainable(run_confirm, plan, data)
    print(f"[race] round {race.round}: {len(runs)} run(s) with seed {runs[0][1]}: "
          f"{', '.join(c.name for c, _ in runs)}; budget left {ledger.left / 60:.1f} min", flush=True)
    tuner = restored(plan, name, fn, resuming)
    stop = RunsStop(ledger, len(runs), concurrency).attach(name)  # a restored round's copy asks it
    if tuner is None:
        per_method = {m: MlflowCallback(plan.mlflow_uri, tracker.experiment_id, parents[m], m, 1,
                                        kind="confirm") for m in {c.method for c, _ in runs}}
        callbacks = [ByMethod(per_method), Progress(f"race {race.round}", len(runs), 1), *result_files()]
        tuner = tune.Tuner(
            fn, param_space={RUN_KEY: tune.grid_search([run_of(c.config, seed) for c, seed in runs])},
            tune_config=tune.TuneConfig(num_samples=1, max_concurrent_trials=concurrency, reuse_actors=True),
            run_config=dataclasses.replace(run_settings(plan, name, callbacks, keep_one=True), stop=stop))
    grid = tuner.fit()
    stopped = stop.why is not None
    if grid.num_terminated + grid.num_errors < len(runs) and not stopped:
        held = stop.charge_interrupted(runs[0][0].method, grid)
        print(f"[race] interrupted: {held:.0f} s its runs held unreported charged", flush=True)
        return False
    reported = 0.0
    for r in grid:
        candidate, seed = _which(runs, r.config[RUN_KEY])
        seconds = float((r.metrics or {}).get("time_total_s", 0.0) or 0.0)
        ledger.charge("confirm", candidate.method, seconds, run_id=f"{name}:{candidate.name}", index=1)
        reported += seconds
        if not stopped:
            race.record(candidate, seed, _outputs(r), seconds or None)
    if stopped:
        unreported = stop.charge_stopped(runs[0][0].method, reported)
        race.abandon(f"{stop.why}: round {race.round} was stopped ({unreported:.0f} s held unreported "
                     "charged) and is not counted")
        print(f"[race] {race.stopped}", flush=True)
    save_race(Path(s.out), race)
    return True


def _which(runs: list[tuple[Candidate, int]], config: dict[str, Any]) -> tuple[Candidate, int]:
    for candidate, seed in runs:
        if run_of(candidate.config, seed) == config:
            return candidate, seed
    raise ValueError(f"a race run whose config matches no candidate (seed {config.get('seed')})")


def _outputs(result) -> Outputs | None:
    """The run's per-row validation outputs; None when it failed or kept none."""
    score = float((result.metrics or {}).get("score", math.nan))
    if failed(result) or not math.isfinite(score) or result.checkpoint is None:
        return None
    with result.checkpoint.as_directory() as folder:
        file = Path(folder) / OUTPUTS
        return Outputs.load(file) if file.exists() else None
