"""Rehearse a cluster config on this machine: Ray's own autoscaler over local raylets.

    python -m search.rehearse up cluster.yaml     # a head with the config's node types
    python search/run.py --address auto --gpus-per-trial 0.25 --max-concurrent 8 ...
    python -m search.rehearse down                # stop every local Ray process

``up`` starts a Ray head whose autoscaler uses Ray's fake multi-node provider
(``RAY_FAKE_CLUSTER=1``): the node types, their resources, ``min_workers``/``max_workers``,
``upscaling_speed`` and the cluster's ``max_workers`` come from the config, and the autoscaler
starts a local raylet for each worker it launches, as it would start a cloud machine. So a search
waiting for GPUs makes it add workers, fractional GPUs pack trials onto them (Ray sets each trial's
``CUDA_VISIBLE_DEVICES``), and idle workers are removed after the idle timeout (shortened here,
``--idle-minutes``). The GPUs are declared, not real: trainers see no CUDA and train on the CPU
(and say so). What only a real cloud shows: machines booting and their setup commands, file
mounts, spot preemption notices, real GPU memory, the network between machines.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

OBJECT_STORE = 200 * 2**20
"""Object store bytes per local raylet (Ray's default, 30% of memory each, does not fit many)."""
FAKE_HEAD = "ray.head.default"  # the fake provider's name for the head's node type


def fake_config(config: dict[str, Any], *, idle_minutes: float = 0.1,
                max_workers: int | None = None) -> dict[str, Any]:
    """The autoscaling config for the fake multi-node provider from a ``ray up`` config: the
    same worker node types (resources, min/max workers) and scaling settings, no cloud parts."""
    types = config.get("available_node_types") or {}
    head_type = config.get("head_node_type")
    if head_type not in types:
        raise ValueError(f"head_node_type {head_type!r} is not one of available_node_types "
                         f"({', '.join(types) or 'none'})")
    workers = {}
    for name, node in types.items():
        if name == head_type:
            continue
        resources = {k: v for k, v in (node.get("resources") or {}).items()}
        resources.setdefault("object_store_memory", OBJECT_STORE)
        workers[name] = {"resources": resources, "node_config": {},
                         "min_workers": int(node.get("min_workers", 0)),
                         "max_workers": int(node.get("max_workers", config.get("max_workers", 2)))}
    if not workers:
        raise ValueError("the config has no worker node types: nothing for the autoscaler to launch")
    head = dict(types[head_type].get("resources") or {})
    return {
        "cluster_name": f"{config.get('cluster_name', 'cluster')}-rehearsal",
        "max_workers": int(max_workers if max_workers is not None else config.get("max_workers", 2)),
        "upscaling_speed": float(config.get("upscaling_speed", 1.0)),
        "idle_timeout_minutes": float(idle_minutes),
        "provider": {"type": "fake_multinode", "use_node_id_as_ip": True,
                     "disable_node_updaters": True, "disable_launch_config_check": True},
        "available_node_types": {FAKE_HEAD: {"resources": head, "node_config": {}, "max_workers": 0},
                                 **workers},
        "head_node_type": FAKE_HEAD,
        "auth": {}, "docker": {}, "file_mounts": {}, "cluster_synced_files": [],
        "file_mounts_sync_continuously": False, "rsync_exclude": [], "rsync_filter": [],
        "initialization_commands": [], "setup_commands": [], "head_setup_commands": [],
        "worker_setup_commands": [], "head_start_ray_commands": [], "worker_start_ray_commands": [],
    }


def load(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{p}: no such cluster config")
    config = yaml.safe_load(p.read_text())
    if not isinstance(config, dict):
        raise ValueError(f"{p}: not a YAML mapping")
    return config


def up(config: dict[str, Any], *, port: int = 6379) -> str:
    """Start the head of a local autoscaling cluster for ``config`` (``fake_config``'s output);
    its address. Fails if a Ray head already runs here (``down`` stops it)."""
    from ray._private.services import get_node_ip_address

    head = dict(config["available_node_types"][FAKE_HEAD]["resources"])
    ip = get_node_ip_address()
    config = {**config, "provider": {**config["provider"], "gcs_address": f"{ip}:{port}"}}
    fd, path = tempfile.mkstemp(prefix="rehearsal-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(config, f)
    cmd = [ray_command(), "start", "--head", f"--port={port}", f"--autoscaling-config={path}",
           f"--num-cpus={head.pop('CPU', 0)}", f"--num-gpus={head.pop('GPU', 0)}",
           f"--object-store-memory={int(head.pop('object_store_memory', OBJECT_STORE))}",
           "--include-dashboard=false", "--disable-usage-stats"]
    if head:
        cmd.append(f"--resources={json.dumps(head)}")
    # Local raylets only: no token authentication (Ray turns it on for `ray start` when a
    # ~/.ray/auth_token exists, and a client without the token could not join).
    env = {**os.environ, "RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1",
           "RAY_AUTH_MODE": "disabled"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise RuntimeError(f"ray start failed (is a Ray head already running here? "
                           f"`python -m search.rehearse down` stops it): {tail[0]}")
    return f"{ip}:{port}"


def ray_command(python: str = sys.executable) -> str:
    """The ``ray`` command of this interpreter's environment (beside ``python``: a virtual
    environment used without activating it has it there and not on PATH), else from PATH."""
    beside = Path(python).parent / ("ray.exe" if os.name == "nt" else "ray")
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("ray")
    if found is None:
        raise RuntimeError(f"no `ray` command beside {python} or on PATH: install ray[tune] in this "
                           "environment")
    return found


def down() -> None:
    """Stop every Ray process on this machine (the head, its autoscaler and the workers it
    started)."""
    subprocess.run([ray_command(), "stop", "--force"], capture_output=True, text=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m search.rehearse", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    u = sub.add_parser("up", help="start a local head whose autoscaler launches the config's workers")
    u.add_argument("config", help="a `ray up` cluster config, e.g. cluster.yaml")
    u.add_argument("--idle-minutes", type=float, default=0.5,
                   help="idle workers are removed after this long (the config's value is for clouds)")
    u.add_argument("--max-workers", type=int, default=None, help="override the config's max_workers")
    u.add_argument("--port", type=int, default=6379)
    sub.add_parser("down", help="stop every Ray process on this machine")
    args = p.parse_args(argv)
    if args.command == "down":
        down()
        print("stopped")
        return 0
    try:
        config = fake_config(load(args.config), idle_minutes=args.idle_minutes, max_workers=args.max_workers)
        address = up(config, port=args.port)
    except (ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    kinds = ", ".join(f"{n} {t['resources']} x{t['min_workers']}-{t['max_workers']}"
                      for n, t in config["available_node_types"].items() if n != FAKE_HEAD)
    print(f"rehearsal head at {address}; workers on demand: {kinds}; idle workers leave after "
          f"{args.idle_minutes:g} min.\nRun a search with --address auto (or {address}); stop with "
          f"`python -m search.rehearse down`.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
