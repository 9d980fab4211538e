"""A leaderboard a reviewer would accept: confirmation, a test split, tuned vs default (§11).

    python -m benchmarks.leaderboard --data-dir ../shared/data/cs224n --full-seed 0   # ~2 h, 2 cores
    python -m benchmarks.leaderboard --data-dir ../shared/data/cs224n --quick         # ~25-30 min

(Times estimated from the earlier §11 run, ~80 min for 195 runs of 60 steps: the full run is 273
runs of 60 steps, ``--quick`` 84 runs of 40 steps, each plus the test split for the picks and defaults.)

Runs the product's own multi-method search (``--val-from-train``, so selection reads only rows
carved from train and the official dev files are the test split; ``--confirm K:N``) once per
search seed, then reads back what the product wrote. Nothing is trained or scored here:

- ``results.json`` rows: best-of-N (the search's best single-seed score), the selection mean (the
  pick's mean over the seeds that chose it), confirmed (the pick retrained with fresh seeds, on
  validation, with its interval), the test score of the pick and of the defaults (both on the
  fresh seeds) and the gain over the defaults on test with its interval, paired by seed and row;
- ``<method>/confirm.json``: which candidate was picked and every seed's score, both steps;
- ``report/leaderboard.json``: the order of the report (by confirmed score) and its verdict as
  the report wrote it: is the lead of the first method over the second separable on the test
  split, did each search beat its defaults.

With ``--full-seed`` it also searches full fine-tuning (same budget and flags). Prints the
command line, then the tables (Markdown); writes the raw records (numbers and verdicts, no
checkpoints) to ``benchmarks/results/leaderboard.json``: small, commit it with ``git add -f``
(``benchmarks/results/`` is ignored otherwise). ``--reuse`` reads the searches already in the
output folder instead of running them again.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shlex
import statistics
import sys
from pathlib import Path

import numpy as np

from benchmarks.common import ROOT, run_search
from search.results import json_safe
from search.stats import t_half_width

FULL = {"methods": "lora,dora,adapter,lora_adapter", "seeds": "0,1,2", "num_samples": 6, "steps": 60,
        "confirm": "2:3", "out": ROOT / "benchmarks/results/leaderboard"}
QUICK = {"methods": "lora,adapter", "seeds": "0,1,2", "num_samples": 4, "steps": 40, "confirm": "2:2",
         "out": ROOT / "benchmarks/results/leaderboard-quick"}
"""``--quick``: two methods, fewer and shorter runs (about 25-30 min on a 2-core machine)."""


def search_flags(args, methods: str, seed: int) -> list[str]:
    flags = ["--method", methods, "--val-from-train", str(args.val_from_train),
             "--max-eval-samples", str(args.val_rows), "--num-samples", str(args.num_samples),
             "--max-steps", str(args.steps), "--eval-every", str(args.eval_every),
             "--confirm", args.confirm, "--seed", str(seed)]
    if args.data_dir:
        flags += ["--data-dir", str(Path(args.data_dir).resolve())]
    if args.max_concurrent:
        flags += ["--max-concurrent", str(args.max_concurrent)]
    return flags


def search_command(flags: list[str], sets: list[str]) -> str:
    return shlex.join(["peft-search", *flags, *[x for s in sets for x in ("--set", s)]])


def method_records(out: Path, results: dict) -> list[dict]:
    """Per method of one search, the product's own figures (``results.json`` and
    ``confirm.json``): the numbers only, no checkpoint or config paths."""
    rows = []
    for r in results["methods"]:
        m = r["method"]
        confirm = json.loads((out / m / "confirm.json").read_text())
        pick = next(c for c in confirm["candidates"] if c["label"] == confirm["winner"])
        rows.append({
            "method": m, "pick": confirm["winner"], "pick_is_default": bool(pick["is_default"]),
            "best_of_n": r.get("best_score"), "selection": r.get("selection_score"),
            "confirmed": r.get("confirmed_score"), "confirmed_lo": r.get("confirmed_lo"),
            "confirmed_hi": r.get("confirmed_hi"),
            "test": r.get("test_score"), "test_lo": r.get("test_lo"), "test_hi": r.get("test_hi"),
            "test_default": r.get("test_default_score"), "test_gain": r.get("test_gain_over_default"),
            "test_gain_lo": r.get("test_gain_lo"), "test_gain_hi": r.get("test_gain_hi"),
            "default_val": r.get("default_score"), "gain_val": r.get("gain_over_default"),
            "stored_pct": r.get("stored_pct"),
            "per_task_pct": {k[:-4]: v for k, v in r.items() if k.endswith("_pct")
                             and k not in ("stored_pct", "amortised_pct", "adapter_equiv_pct")},
            "selection_seeds": [{"label": c["label"], "is_default": c["is_default"],
                                 "seed_scores": c["seed_scores"]} for c in confirm["candidates"]],
            "fresh_seeds": [{"label": c["label"], "is_default": c["is_default"],
                             "seed_scores": c["seed_scores"]} for c in confirm.get("fresh", [])],
            "pick_config": pick["config"]})
    return rows


def product_report(out: Path) -> dict:
    """The report the search wrote (``report/leaderboard.json``: its order and verdict), built
    again from the search's MLflow store when missing or older than the verdict in it."""
    path = out / "report" / "leaderboard.json"
    saved = json.loads(path.read_text()) if path.exists() else {}
    if "verdict" not in saved:
        from search.report import make_report

        make_report(f"sqlite:///{out / 'mlflow.db'}", out.name, out / "report", log=False)
        saved = json.loads(path.read_text())
    return saved


_LEAD = re.compile(r"\*\*(?P<first>.+?)\*\* \(first on validation\) vs \*\*(?P<second>.+?)\*\*.*?"
                   r"(?P<diff>[+-]\d+\.\d+)(?: \[(?P<lo>[+-]\d+\.\d+), (?P<hi>[+-]\d+\.\d+)\])? points")


def lead_of(verdict: str) -> dict | None:
    """The report's sentence on the first method against the second, and what it says: where it
    was judged, the difference in points with its interval, and the outcome."""
    line = next((x for x in verdict.splitlines() if "(first on validation)" in x), None)
    if line is None:
        return None
    found = _LEAD.search(line)
    points = {k: float(v) for k, v in found.groupdict().items()
              if k in ("diff", "lo", "hi") and v is not None} if found else {}
    outcome = ("not separable" if "**Not separable at this budget**" in line
               else "separable" if "The lead is separable" in line
               else "reversed" if "is ahead, separably" in line else "no verdict")
    return {"first": found["first"] if found else None, "second": found["second"] if found else None,
            "on": "test" if line.startswith("On the test split") else "validation",
            "diff": points.get("diff"), "lo": points.get("lo"), "hi": points.get("hi"), "outcome": outcome,
            "sentence": line.replace("**", "")}


def gain_sentences(verdict: str) -> dict[str, str]:
    """The report's "did the search beat its defaults" sentence of each method."""
    return {x[2:].split(":", 1)[0]: x[2:].replace("**", "") for x in verdict.splitlines() if x.startswith("- ")}


def _f(v, spec: str = ".4f") -> str:
    return format(v, spec) if v is not None and math.isfinite(v) else "-"


def _span(v, lo, hi, scale: float = 1.0, spec: str = ".4f") -> str:
    if v is None or not math.isfinite(v):
        return "-"
    text = format(scale * v, spec)
    if lo is not None and hi is not None and math.isfinite(lo) and math.isfinite(hi):
        text += f" [{format(scale * lo, spec)}, {format(scale * hi, spec)}]"
    return text


def _gap(a, b) -> float | None:
    """``a - b`` in points (None when either is missing)."""
    if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)):
        return None
    return 100 * (a - b)


def print_tables(searches: dict[str, dict]) -> dict:
    """The tables of §11 from the product's figures; returns the summary numbers."""
    print("\n| search | method | pick | best-of-N (val, 1 seed) | selection mean (val, chose) | confirmed [95%] "
          "(val, fresh seeds) | test of the pick [95%] | test − selection | test − confirmed | "
          "defaults on test | pick − defaults on test [95%] (points) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    gaps: dict[str, list[float]] = {"test - best_of_n": [], "test - selection": [], "test - confirmed": [],
                                    "confirmed - selection": []}
    gains: dict[str, list[dict]] = {}
    for name, s in searches.items():
        for r in s["methods"]:
            g = {"test - best_of_n": _gap(r["test"], r["best_of_n"]),
                 "test - selection": _gap(r["test"], r["selection"]),
                 "test - confirmed": _gap(r["test"], r["confirmed"]),
                 "confirmed - selection": _gap(r["confirmed"], r["selection"])}
            for k, v in g.items():
                if v is not None:
                    gaps[k].append(v)
            if r["pick_is_default"]:
                gain = "0 (the pick is the defaults)"
            else:
                gain = _span(r["test_gain"], r["test_gain_lo"], r["test_gain_hi"], 100, "+.2f")
                if r["test_gain_lo"] is not None and (r["test_gain_lo"] > 0 or r["test_gain_hi"] < 0):
                    gain = f"**{gain}**"
            if r["test_gain"] is not None:
                gains.setdefault(r["method"], []).append({"search": name, "gain": r["test_gain"],
                                                          "lo": r["test_gain_lo"], "hi": r["test_gain_hi"]})
            print(f"| {name} | {r['method']} | {'the defaults' if r['pick_is_default'] else r['pick']} | "
                  f"{_f(r['best_of_n'])} | {_f(r['selection'])} | "
                  f"{_span(r['confirmed'], r['confirmed_lo'], r['confirmed_hi'])} | "
                  f"{_span(r['test'], r['test_lo'], r['test_hi'])} | {_f(g['test - selection'], '+.2f')} | "
                  f"{_f(g['test - confirmed'], '+.2f')} | {_f(r['test_default'])} | {gain} |")

    print("\nThe lead, as the product's report judged it (rank 1 = best confirmed score):")
    changes, leads = 0, 0
    for name, s in searches.items():
        if s["lead"] is None:
            continue
        leads += 1
        raw_first = max(s["methods"], key=lambda r: r["best_of_n"] or -math.inf)["method"]
        changes += raw_first != s["report_order"][0]
        print(f"- {name}: best-of-N rank 1 {raw_first}; confirmed rank 1 {s['report_order'][0]}. "
              f"{s['lead']['sentence']}")
    outcomes = [s["lead"]["outcome"] for s in searches.values() if s["lead"] is not None]
    if leads:
        print(f"Rank 1 changed between best-of-N and confirmed in {changes} of {leads} searches; "
              f"lead outcomes: {', '.join(outcomes)}.")

    print("\nWhat each figure says of the test score, over the picks (points; mean, min..max):")
    for k, v in gaps.items():
        if v:
            print(f"- {k}: {statistics.fmean(v):+.2f} ({min(v):+.2f}..{max(v):+.2f}, {len(v)} picks)")
    near = [abs(v) <= 1.0 for v in gaps["test - confirmed"]]
    if near:
        print(f"- |test - confirmed| <= 1.0 point for {sum(near)} of {len(near)} picks")

    print("\nPick − defaults on test, mean over searches ± t half-width over them (the product's "
          "paired gains):")
    print("| method | mean (points) | per search (* = its interval excludes 0) |\n|---|---|---|")
    summary_gains = {}
    for m, gs in gains.items():
        values = [g["gain"] for g in gs]
        half = t_half_width(np.array(values)) if len(values) > 1 else math.nan
        cells = ", ".join(f"{100 * g['gain']:+.2f}" + ("*" if g["lo"] is not None
                                                        and (g["lo"] > 0 or g["hi"] < 0) else "")
                          for g in gs)
        print(f"| {m} | {100 * statistics.fmean(values):+.2f} ± {_f(100 * half, '.2f')} | {cells} |")
        summary_gains[m] = {"mean": statistics.fmean(values), "t_half_width": half, "per_search": gs}
    return {"gaps_points": gaps, "rank1_changes": changes, "leads": leads, "lead_outcomes": outcomes,
            "gains_on_test": summary_gains}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="python -m benchmarks.leaderboard", description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default=None, help="unset: the synthetic demo suite (a smoke test)")
    p.add_argument("--quick", action="store_true",
                   help="smaller defaults: " + ", ".join(f"{k} {v}" for k, v in QUICK.items() if k != "out"))
    p.add_argument("--methods", default=None, help=f"default {FULL['methods']}")
    p.add_argument("--seeds", default=None, help=f"search seeds, default {FULL['seeds']} ('' with --full-seed: "
                   "full fine-tuning's search only)")
    p.add_argument("--full-seed", type=int, default=None, help="also search full fine-tuning at this seed")
    p.add_argument("--num-samples", type=int, default=None, help=f"default {FULL['num_samples']}")
    p.add_argument("--steps", type=int, default=None, help=f"default {FULL['steps']}")
    p.add_argument("--eval-every", type=int, default=20)
    p.add_argument("--confirm", default=None, help=f"default {FULL['confirm']}")
    p.add_argument("--val-from-train", type=float, default=0.05)
    p.add_argument("--val-rows", type=int, default=300, help="validation rows per task (--max-eval-samples)")
    p.add_argument("--max-concurrent", type=int, default=None, help="trials at once (unset: the product's)")
    p.add_argument("--set", action="append", default=None, help="default batch_size=16, max_length=64")
    p.add_argument("--out", type=Path, default=None, help="the searches' folder")
    p.add_argument("--json", type=Path, default=ROOT / "benchmarks/results/leaderboard.json")
    p.add_argument("--reuse", action="store_true")
    args = p.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    sets = args.set or ["batch_size=16", "max_length=64"]
    command = shlex.join(["python", "-m", "benchmarks.leaderboard", *argv])
    print(f"command: {command}", flush=True)

    jobs = [(f"seed{s}", args.methods, int(s)) for s in args.seeds.split(",") if s.strip()]
    if args.full_seed is not None:
        jobs.append((f"full-seed{args.full_seed}", "full", args.full_seed))
    searches: dict[str, dict] = {}
    for name, methods, seed in jobs:
        out = args.out / name
        flags = search_flags(args, methods, seed)
        wall = None
        if args.reuse and (out / "results.json").exists():
            results = json.loads((out / "results.json").read_text())
        else:
            results, wall = run_search(out, flags, sets=sets, quiet=True)
            print(f"{name}: {wall / 60:.1f} min", flush=True)
        report = product_report(out)
        verdict = report.get("verdict", "")
        searches[name] = {"command": search_command(flags, sets), "wall_min": wall and wall / 60,
                          "methods": method_records(out, results),
                          "report_order": [r["method"] for r in report.get("methods", [])],
                          "lead": lead_of(verdict), "gain_sentences": gain_sentences(verdict),
                          "verdict": verdict}

    print(f"\ncommand: {command}")
    for name, s in searches.items():
        print(f"  {name}: {s['command']}")
    summary = print_tables(searches)
    record = {"command": command, "quick": args.quick,
              "settings": {k: str(v) for k, v in vars(args).items()} | {"set": sets},
              "searches": searches, "summary": summary}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(json_safe(record), indent=1, default=str))
    print(f"\nwrote {args.json} (raw records, no checkpoints: commit with git add -f)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
