"""Command line of ``python -m trainers.train``: one flag per config field, built from the
dataclasses so the flags and the trial-config keys can never drift apart."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import itertools
import json
import sys
import textwrap
import typing
from pathlib import Path

from trainers.config import TrainConfig
from trainers.methods import METHODS, get_method

_SKIP = {"method_cfg"}


# ---- field docs: the string literal right after a dataclass field -------------------------

@functools.cache
def _own_field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings written in ``cls``'s own body, read once per class."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError, SyntaxError):  # no source at hand: flags show defaults only
        return {}
    body = next((n.body for n in tree.body if isinstance(n, ast.ClassDef)), [])
    docs = {}
    for stmt, after in itertools.pairwise(body):
        if (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
                and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)):
            docs[stmt.target.id] = " ".join(after.value.value.replace("``", "`").split())
    return docs


def field_docs(cls: type) -> dict[str, str]:
    """Docs of every field of dataclass ``cls``, inherited ones included (a subclass wins)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if dataclasses.is_dataclass(klass):
            docs.update(_own_field_docs(klass))
    return docs


# ---- flags --------------------------------------------------------------------------------

def _flag_type(hint) -> tuple[type, bool]:
    """(python type for argparse, is_bool) of a dataclass field annotation."""
    args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    base = args[0]
    if typing.get_origin(base) is tuple:
        return str, False
    return base, base is bool


def _default(f: dataclasses.Field) -> object:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _show(value: object) -> str:
    """A default as the flag takes it: strings quoted (a comma list stays one value)."""
    if isinstance(value, tuple):
        value = ",".join(map(str, value))
    return repr(value) if isinstance(value, str) else str(value)


def _add_flag(group, name: str, hint, help_text: str) -> None:
    kind, is_bool = _flag_type(hint)
    flag = "--" + name.replace("_", "-")
    help_text = help_text.replace("%", "%%")  # argparse %-formats help strings
    if is_bool:
        group.add_argument(flag, dest=name, type=_bool, default=None, metavar="true|false",
                           help=help_text)
    else:
        group.add_argument(flag, dest=name, type=kind, default=None, help=help_text)


def _help(doc: str | None, defaults: str) -> str:
    return f"{doc} ({defaults})" if doc else f"({defaults})"


def _own_help(f: dataclasses.Field, docs: dict[str, str]) -> str:
    return _help(docs.get(f.name), f"default: {_show(_default(f))}")


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _method_fields() -> dict[str, list[tuple[str, dataclasses.Field, type]]]:
    """field name -> [(method, field, Config class), ...] in METHODS order."""
    taken: dict[str, list[tuple[str, dataclasses.Field, type]]] = {}
    common = {f.name for f in dataclasses.fields(TrainConfig)}
    for name in METHODS:
        cls = get_method(name).Config
        for f in dataclasses.fields(cls):
            if f.name not in common:
                taken.setdefault(f.name, []).append((name, f, cls))
    return taken


def _by_method(pairs: list[tuple[str, object]]) -> dict[object, list[str]]:
    """Group (method, value) pairs by value, in METHODS order."""
    out: dict[object, list[str]] = {}
    for method, value in pairs:
        out.setdefault(value, []).append(method)
    return out


def _shared_help(key: str, takers: list[tuple[str, dataclasses.Field, type]]) -> str:
    """One doc if every method documents the field alike, else each doc with its methods;
    then each default with its methods: "(default: 64 for adapter, pha; 32 for unipelt)"."""
    docs = _by_method([(m, field_docs(cls).get(key)) for m, _, cls in takers])
    if len(docs) == 1:
        doc = next(iter(docs))
    else:
        doc = " ".join(f"{', '.join(ms)}: {d}" for d, ms in docs.items() if d) or None
    defaults = _by_method([(m, _show(_default(f))) for m, f, _ in takers])
    return _help(doc, "default: " + "; ".join(f"{d} for {', '.join(ms)}" for d, ms in defaults.items()))


def _add_method_flags(p: argparse.ArgumentParser) -> None:
    """Flags only one method takes go in its group; a flag several methods take is added
    once, in a group of its own, with every method's default."""
    taken = _method_fields()
    shared = {k: v for k, v in taken.items() if len(v) > 1}
    if shared:
        group = p.add_argument_group("method options shared by several methods")
        for key, takers in shared.items():
            _add_flag(group, key, typing.get_type_hints(takers[0][2])[key], _shared_help(key, takers))
    for name in METHODS:
        cls = get_method(name).Config
        group = p.add_argument_group(f"method options ({name})")
        also = [f"--{f.name.replace('_', '-')}" for f in dataclasses.fields(cls) if f.name in shared]
        if also:
            group.description = f"also takes the shared {', '.join(also)}"
        hints, docs = typing.get_type_hints(cls), field_docs(cls)
        for f in dataclasses.fields(cls):
            if len(taken.get(f.name, ())) == 1:
                _add_flag(group, f.name, hints[f.name], _own_help(f, docs))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m trainers.train",
        description="Train one encoder on several tasks at once with a PEFT method. "
                    "Writes OUT/result.json and OUT/checkpoint/.")
    p.add_argument("--config", type=Path, help="flat JSON config (e.g. a search's best_config.json); "
                   "flags given here override it")
    p.add_argument("--out", type=Path, default=None, help="output directory (default: runs/<method>)")
    common = p.add_argument_group("training", f"--method is one of: {', '.join(METHODS)}")
    hints, docs = typing.get_type_hints(TrainConfig), field_docs(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        if f.name not in _SKIP:
            _add_flag(common, f.name, hints[f.name], _own_help(f, docs))
    _add_method_flags(p)
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
    if flat.get("init_from"):  # a transfer: model, method and its options come from there
        from trainers.transfer import inherit

        flat = inherit(flat)
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
    from trainers.transfer import TransferError

    out = args.out or Path("runs") / (cfg.method if cfg.init_from is None
                                      else f"{cfg.method}-{'-'.join(cfg.tasks)}")
    try:
        result = train(cfg, out=out)
    except (DataError, RuntimeError, TransferError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps({k: result[k] for k in ("method", "score", "metrics", "steps")}))
    if "transfer" in result:
        params = result["params"]["per_task_pct"]
        print("transfer: " + "; ".join(
            f"{t} started from {i['from'] or 'scratch'} ({i['rule']}), trains "
            f"{params[t]:.3f}% of the backbone" for t, i in result["transfer"]["init"].items()))
    print(f"wrote {out / 'result.json'} and {out / 'checkpoint'}")
    return 0
