"""Command line of ``python -m trainers.train``: one flag per config field, built from the
dataclasses so the flags and the trial-config keys can never drift apart."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from pathlib import Path

from trainers.config import TrainConfig
from trainers.methods import METHODS, get_method

_SKIP = {"method_cfg"}


def _flag_type(hint) -> tuple[type, bool]:
    """(python type for argparse, is_bool) of a dataclass field annotation."""
    args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    base = args[0]
    if typing.get_origin(base) is tuple:
        return str, False
    return base, base is bool


def _add_fields(parser: argparse.ArgumentParser, cls, seen: set[str]) -> None:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in _SKIP or f.name in seen:
            continue
        seen.add(f.name)
        kind, is_bool = _flag_type(hints[f.name])
        flag = "--" + f.name.replace("_", "-")
        default = None if f.default is dataclasses.MISSING else f.default
        help_text = f"(default: {default})"
        if is_bool:
            parser.add_argument(flag, dest=f.name, type=_bool, default=None, metavar="true|false",
                                help=help_text)
        else:
            parser.add_argument(flag, dest=f.name, type=kind, default=None, help=help_text)


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m trainers.train",
        description="Train one encoder on several tasks at once with a PEFT method. "
                    "Writes OUT/result.json and OUT/checkpoint/.")
    p.add_argument("--config", type=Path, help="flat JSON config (e.g. a search's best_config.json); "
                   "flags given here override it")
    p.add_argument("--out", type=Path, default=None, help="output directory (default: runs/<method>)")
    seen: set[str] = set()
    common = p.add_argument_group("training")
    _add_fields(common, TrainConfig, seen)
    common.description = f"--method is one of: {', '.join(METHODS)}"
    for name in METHODS:
        group = p.add_argument_group(f"method options ({name})")
        _add_fields(group, get_method(name).Config, seen)
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The --config file (if any), then every flag given (flags default to None = not given)."""
    flat: dict = {}
    if args.config is not None:
        try:
            raw = json.loads(args.config.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"--config {args.config}: {e}") from e
        flat.update(raw.get("config", raw) if isinstance(raw, dict) else {})
    flat.update({k: v for k, v in vars(args).items() if k not in ("config", "out") and v is not None})
    return TrainConfig.from_flat(flat)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        cfg = config_from_args(args)
    except (ValueError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from trainers.data import DataError
    from trainers.loop import train

    out = args.out or Path("runs") / cfg.method
    try:
        result = train(cfg, out=out)
    except (DataError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps({k: result[k] for k in ("method", "score", "metrics", "steps")}))
    print(f"wrote {out / 'result.json'} and {out / 'checkpoint'}")
    return 0
