"""The search's command line (``peft-search``, ``python search/run.py``).

    peft-search --method adapter                   # demo: synthetic tasks, laptop CPU
    peft-search --method lora,adapter --data-dir ../shared/data/cs224n
    peft-search --resume                           # go on with the last search
    peft-search replay --experiment NAME           # replay schedulers over a FIFO search

The flags are generated from ``search.settings.Settings`` (one flag per field, its help in the
field's metadata). Every setting is checked (methods, spaces, tasks, data) by ``search.plan``
before Ray starts; ``search.driver`` runs the search.
"""

from __future__ import annotations

import argparse
import sys
import time
import typing
from dataclasses import MISSING, Field, asdict, fields
from pathlib import Path
from typing import Any

from search.settings import Settings, resolve_settings

RUNTIME = ("resume", "address", "verbose", "deadline")
"""Flags of one invocation, not of the search: never saved in ``search.json``."""


def _type(hint: Any) -> type:
    """The argparse type of a field annotation (``int | None`` -> int)."""
    args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    return args[0] if args[0] in (int, float, str) else str


def _default_text(f: Field) -> str:
    """What ``--help`` shows as a setting's default ('' when unset means something else)."""
    if "shown" in f.metadata:
        return f.metadata["shown"]
    if f.default is MISSING or f.default is None:
        return ""
    return f.default if isinstance(f.default, str) else f"{f.default:g}"


def _add_setting(group: argparse._ArgumentGroup, f: Field, hint: Any, choices: dict[str, list[str]]) -> None:
    meta = dict(f.metadata)
    name = meta.pop("flag", "--" + f.name.replace("_", "-"))
    help_text = meta.pop("help").format(methods=", ".join(choices["methods"]))
    default = _default_text(f)
    if default:
        help_text += f" (default: {default})"
    for key in ("group", "shown"):
        meta.pop(key, None)
    if "choices" in meta:
        meta["choices"] = choices[meta["choices"]]
    if meta.get("action") not in ("append", "store_true", "store_false"):
        meta["type"] = _type(hint)
    # Unset flags stay out of the namespace: the typed ones are told apart from the defaults
    # (``--resume`` compares them with the saved search), and Settings fills in the rest.
    group.add_argument(name, dest=f.name, default=argparse.SUPPRESS, help=help_text, **meta)


def build_parser() -> argparse.ArgumentParser:
    from search.schedule.schedulers import SCHEDULERS
    from search.searchers import SEARCHERS
    from trainers.methods import METHODS

    p = argparse.ArgumentParser(
        prog="peft-search", description="Search PEFT methods' hyperparameters with Ray Tune, "
        "ASHA and Optuna; record every trial in MLflow.",
        epilog="Method spaces live in spaces/<method>.py. Results: runs/<experiment>/; MLflow: "
               "`mlflow ui --backend-store-uri sqlite:///$PWD/mlflow.db`. Replay schedulers over a "
               "finished --scheduler fifo search: `peft-search replay --experiment NAME`.")
    choices = {"methods": list(METHODS), "schedulers": list(SCHEDULERS), "searchers": list(SEARCHERS)}
    hints = typing.get_type_hints(Settings)
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in fields(Settings):
        if f.metadata.get("internal"):
            continue
        group = groups.get(f.metadata["group"]) or groups.setdefault(
            f.metadata["group"], p.add_argument_group(f.metadata["group"]))
        _add_setting(group, f, hints[f.name], choices)
    groups["budget"].add_argument(
        "--deadline", default=None, metavar="DURATION", help="with --budget: a wall clock from this "
        "start (a --resume starts a new one), e.g. 1h: no trial, race round or fresh run starts that "
        "would end after it, and the budget left counts at most the slots x the time to it")
    groups["resources and cluster"].add_argument(
        "--address", default=None, help="join a running Ray cluster ('auto' on a `ray up` head); "
        "unset = local Ray")
    groups["records"].add_argument(
        "--resume", action="store_true", help="continue the search --experiment (unset: the "
        "latest under runs/) with its saved settings; finished trials are not rerun")
    groups["records"].add_argument(
        "-v", "--verbose", action="store_true", help="also show Ray's and Ray Tune's own "
        "console output (start-up messages, status tables)")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["replay"]:  # peft-search replay --experiment NAME: schedulers offline
        from search.report.replay import main as replay

        return replay(argv[1:])
    args = vars(build_parser().parse_args(argv))
    started = time.time()
    resume, address, verbose, deadline = (args.pop(k, None) for k in RUNTIME)
    try:
        from search.plan import make_plan, prepare

        settings = resolve_settings(args, bool(resume))
        deadline_at = _deadline(deadline, settings.budget, started)
        plan = make_plan(settings)
        data = prepare(plan)
    except (ValueError, TypeError, FileNotFoundError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from search.results import write_json_atomic

    write_json_atomic(Path(settings.out) / "search.json", asdict(settings))
    from search.driver import run_search  # Ray is imported from here on

    return run_search(plan, data, address=address, resuming=bool(resume), verbose=bool(verbose),
                      deadline_at=deadline_at)


def _deadline(text: str | None, budget: str | None, started: float) -> float | None:
    """``--deadline``'s wall clock (epoch seconds) from this invocation's start; None unset."""
    if text is None:
        return None
    from search.schedule.budget import parse_duration

    seconds = parse_duration(text, "--deadline")
    if budget is None:
        raise ValueError(f"--deadline {text}: needs --budget (the trial-time to spend; with N slots, "
                         f"--budget N x {text} spends what the deadline allows)")
    return started + seconds
