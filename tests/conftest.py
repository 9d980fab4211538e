"""Pytest settings and fixtures. Tests import helpers from plain modules (``tiny``,
``searchkit``), never from this file."""

from __future__ import annotations

import os

import pytest
import torch
from tiny import tiny_tokenizer_obj, write_tiny_model_dir

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(1)


@pytest.fixture
def tiny_tokenizer():
    return tiny_tokenizer_obj()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    return write_tiny_model_dir(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture
def ray_local(tmp_path):
    """Ray in this process, and the environment as it was afterwards: ray.init sets variables
    (RAY_AUTH_MODE=token, ...) that would change how later tests' clusters authenticate."""
    import os

    import ray

    saved = dict(os.environ)
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        yield tmp_path
    finally:
        ray.shutdown()
        os.environ.clear()
        os.environ.update(saved)
