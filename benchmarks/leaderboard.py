"""A leaderboard a reviewer would accept: confirmation, a test split, tuned vs default.

    python -m benchmarks.leaderboard --data-dir ../shared/data/cs224n --seeds 0,1,2

Runs the product's own multi-method search (``--val-from-train``, so selection reads only rows
carved from train and the official dev files are the test set, ``--confirm K:N``) once per
search seed, then reads each search's ``results.json`` and ``<method>/confirm.json``:

- **selection bias**: per method, the search's best-of-N validation score (one seed, the number
  a search without confirmation reports), the confirmed mean over N new seeds, and the test
  score of the confirmed pick; the gaps test - best-of-N and test - confirmed;
- **rank 1**: per search seed, the method ranked first by best-of-N and by confirmed mean,
  whether the confirmed lead over the second is separable (paired interval of the difference),
  and how often rank 1 changes between the two leaderboards;
- **tuned vs default**: the confirmed pick against the method's own defaults (both retrained
  with the same N seeds to the same steps by ``--confirm``), on the test split: paired
  difference with its 95% interval (the defaults' checkpoints are scored on test here; the
  search itself never reads them);
- with ``--full-seed``: a search of full fine-tuning (same budget, same flags) for
  "best PEFT vs full fine-tuning" with % parameters per task.

Prints tables and writes ``benchmarks/results/leaderboard.json``. ``--reuse`` reads searches
already in ``--out`` instead of running them again.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

import numpy as np

from benchmarks.common import ROOT, run_search
from search.heldout import score_test
from search.stats import Outputs, difference, interval, separable, t_half_width


def search_flags(args, methods: str, seed: int) -> list[str]:
    return ["--method", methods, "--data-dir", str(Path(args.data_dir).resolve()),
            "--val-from-train", str(args.val_from_train), "--max-eval-samples", str(args.val_rows),
            "--num-samples", str(args.num_samples), "--max-steps", str(args.steps),
            "--eval-every", str(args.eval_every), "--confirm", args.confirm, "--seed", str(seed)]


def method_rows(out: Path, results: dict) -> list[dict]:
    """Per method of one search: best-of-N, confirmed, test, defaults on test."""
    rows = []
    for r in results["methods"]:
        m = r["method"]
        confirm = json.loads((out / m / "confirm.json").read_text())
        cands = {c["label"]: c for c in confirm["candidates"]}
        pick = cands[confirm["winner"]]
        default = next((c for c in confirm["candidates"] if c["is_default"]), None)
        row = {"method": m, "best_of_n": r["best_score"], "confirmed": pick["mean"],
               "confirmed_lo": pick["interval"]["lo"], "confirmed_hi": pick["interval"]["hi"],
               "test": r.get("test_score"), "test_lo": r.get("test_lo"), "test_hi": r.get("test_hi"),
               "stored_pct": r.get("stored_pct"), "pick": confirm["winner"],
               "per_task_pct": {k[:-4]: v for k, v in r.items() if k.endswith("_pct")
                                and k not in ("stored_pct", "amortised_pct", "adapter_equiv_pct")},
               "default_val": default["mean"] if default else None}
        tested = out / m / "test_outputs.npz"
        if default is not None and tested.exists():
            pick_test = Outputs.load(tested)
            if default is pick:
                row.update(gain_test=0.0, gain_lo=0.0, gain_hi=0.0, default_test=row["test"])
            else:
                cache = out / m / "default_test_outputs.npz"
                if cache.exists():
                    default_test = Outputs.load(cache)
                else:
                    default_test, _, _ = score_test(default["checkpoints"], log=lambda s: None)
                    default_test.save(cache)
                d = difference(pick_test, default_test)
                row.update(gain_test=d.mean, gain_lo=d.lo, gain_hi=d.hi,
                           default_test=interval(default_test).mean)
        rows.append(row)
    return rows


def lead(out: Path, rows: list[dict], key: str) -> dict:
    """The first and second method by ``key`` and (for the confirmed board) whether the lead is
    separable: paired difference of their confirmed validation outputs."""
    ranked = sorted(rows, key=lambda r: -r[key])
    first, second = ranked[0], ranked[1] if len(ranked) > 1 else None
    info = {"first": first["method"], "second": second["method"] if second else None}
    if second is not None and key == "confirmed":
        a = Outputs.load(out / first["method"] / "confirm_outputs.npz")
        b = Outputs.load(out / second["method"] / "confirm_outputs.npz")
        d = difference(a, b)
        info.update(diff=d.mean, lo=d.lo, hi=d.hi, separable=separable(d))
    return info


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.leaderboard", description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", required=True)
    p.add_argument("--methods", default="lora,dora,adapter,lora_adapter")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--full-seed", type=int, default=None, help="also search full fine-tuning at this seed")
    p.add_argument("--num-samples", type=int, default=6)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--eval-every", type=int, default=20)
    p.add_argument("--confirm", default="2:3")
    p.add_argument("--val-from-train", type=float, default=0.05)
    p.add_argument("--val-rows", type=int, default=300, help="validation rows per task (--max-eval-samples)")
    p.add_argument("--set", action="append", default=["batch_size=16", "max_length=64"])
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/leaderboard")
    p.add_argument("--reuse", action="store_true")
    args = p.parse_args(argv)
    seeds = [int(x) for x in args.seeds.split(",")]
    searches: dict[str, tuple[Path, list[dict]]] = {}
    jobs = [(f"seed{s}", args.methods, s) for s in seeds]
    if args.full_seed is not None:
        jobs.append((f"full-seed{args.full_seed}", "full", args.full_seed))
    for name, methods, seed in jobs:
        out = args.out / name
        if args.reuse and (out / "results.json").exists():
            results = json.loads((out / "results.json").read_text())
        else:
            results, wall = run_search(out, search_flags(args, methods, seed), sets=args.set, quiet=True)
            print(f"{name}: {wall / 60:.1f} min", flush=True)
        searches[name] = (out, method_rows(out, results))

    report: dict = {"settings": vars(args) | {"out": str(args.out)}, "searches": {}}
    print("\nper method and search seed (validation = rows carved from train; test = official dev)")
    print(f"{'search':<12}{'method':<14}{'best-of-N':>10}{'confirmed [95%]':>26}{'test [95%]':>26}"
          f"{'test-bestN':>11}{'test-conf':>10}{'default test':>13}{'tuned-default test [95%]':>28}")
    bias_raw, bias_conf, gains = [], [], {}
    for name, (_, rows) in searches.items():
        for r in rows:
            t = r["test"]
            gap_raw, gap_conf = t - r["best_of_n"], t - r["confirmed"]
            bias_raw.append(gap_raw)
            bias_conf.append(gap_conf)
            gain = (f"{100 * r['gain_test']:+.2f} [{100 * r['gain_lo']:+.2f}, {100 * r['gain_hi']:+.2f}]"
                    if r.get("gain_test") is not None else "-")
            if r.get("gain_test") is not None:
                gains.setdefault(r["method"], []).append(r["gain_test"])
            print(f"{name:<12}{r['method']:<14}{r['best_of_n']:>10.4f}"
                  f"{r['confirmed']:>8.4f} [{r['confirmed_lo']:.4f}, {r['confirmed_hi']:.4f}]"
                  f"{t:>8.4f} [{r['test_lo']:.4f}, {r['test_hi']:.4f}]{100 * gap_raw:>+11.2f}{100 * gap_conf:>+10.2f}"
                  f"{r.get('default_test') or math.nan:>13.4f}{gain:>28}")
        report["searches"][name] = {"rows": rows}
    print("\nrank 1 per search seed")
    changes = 0
    for name, (out, rows) in searches.items():
        if name.startswith("full") or len(rows) < 2:
            continue
        raw, conf = lead(out, rows, "best_of_n"), lead(out, rows, "confirmed")
        changes += raw["first"] != conf["first"]
        verdict = ("separable" if conf["separable"] else "NOT separable at this budget")
        print(f"  {name}: best-of-N rank 1 {raw['first']}; confirmed rank 1 {conf['first']} over "
              f"{conf['second']} by {100 * conf['diff']:+.2f} [{100 * conf['lo']:+.2f}, {100 * conf['hi']:+.2f}] "
              f"points: {verdict}")
        report["searches"][name].update(raw_lead=raw, confirmed_lead=conf)
    firsts = [s["confirmed_lead"]["first"] for s in report["searches"].values() if "confirmed_lead" in s]
    print(f"  confirmed rank 1 across seeds: {firsts}; rank 1 changed between best-of-N and confirmed "
          f"in {changes} of {len(firsts)} searches")
    print("\nselection bias (test - validation, points): best-of-N "
          f"mean {100 * statistics.fmean(bias_raw):+.2f}, confirmed mean {100 * statistics.fmean(bias_conf):+.2f}; "
          f"|test - confirmed| <= 1.0 point in {sum(abs(b) <= 0.01 for b in bias_conf)} of {len(bias_conf)}")
    print("\ntuned vs default on test, mean over search seeds (t interval over seeds):")
    for m, g in gains.items():
        half = t_half_width(np.array(g)) if len(g) > 1 else math.nan
        print(f"  {m:<14} {100 * statistics.fmean(g):+.2f} +- {100 * half:.2f} points ({len(g)} search seeds)")
    report.update(bias_raw=bias_raw, bias_confirmed=bias_conf, rank1_confirmed=firsts,
                  rank1_changes=changes, gains=gains)
    dest = ROOT / "benchmarks/results/leaderboard.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(report, indent=2, default=str))
    print(f"\nwrote {dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
