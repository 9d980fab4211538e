"""Helpers the benchmark scripts share: run a search (the ``search/run.py`` command) into a
fresh folder."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_search(out: Path, flags: list[str], sets: list[str] = (), quiet: bool = False) -> tuple[dict, float]:
    """Run one search into ``out`` (wiped first; MLflow SQLite inside it) and return its
    ``results.json`` and the command's wall seconds. Raises if the search fails."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    cmd = [sys.executable, str(ROOT / "search/run.py"), *flags, "--experiment", out.name,
           "--out", str(out), "--mlflow-uri", f"sqlite:///{out}/mlflow.db"]
    for item in sets:
        cmd += ["--set", item]
    print("running:", " ".join(cmd[1:]), flush=True)
    t0 = time.time()
    with open(out / "search.log", "w") as log:
        done = subprocess.run(cmd, cwd=ROOT, stdout=log if quiet else None, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise SystemExit(f"search failed (exit {done.returncode}); see {out / 'search.log'}")
    return json.loads((out / "results.json").read_text()), time.time() - t0
