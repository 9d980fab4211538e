"""Hand a finished run's memory back, for a process that trains run after run.

A search worker hosts trial after trial (Ray Tune's ``reuse_actors``), each in a new thread.
Measured in such a worker (issue 24, BENCHMARKS.md §14), two things kept every trial's memory:

- **Reference cycles.** Some models point back at themselves (PHA's network holds the backbone
  whose layers hold the network): such a model is freed only when Python's cyclic collector
  runs its oldest generation, which can be several trials later.
- **The C allocator.** glibc gives each new thread its own malloc arena and keeps the pages of
  freed blocks mapped for reuse by that arena. The tensors of a trial (the backbone's copy,
  activations, optimizer state, the trial's copy of the data) are freed when it ends, yet the
  process keeps their pages: a MiniLM worker grew ~0.35 GB per trial with no plateau.

``release()`` collects the cycles, returns the CUDA caching allocator's free blocks to the
driver (other trials on the same GPU can then use them), and asks glibc to give free pages back
to the system (``malloc_trim``; a no-op where the C library has none, e.g. macOS or musl).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from functools import cache

import torch


@cache
def _malloc_trim():
    """glibc's ``malloc_trim``, or None where the C library has none."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def anon_gb(pid: int | str = "self") -> float | None:
    """Private anonymous memory of process ``pid`` in GB (``Pss_Anon`` of its
    ``/proc/PID/smaps_rollup``: its heap, not shared libraries or shared memory); None where
    that file is missing (not Linux, an exited process)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss_Anon:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        return None
    return None


def release() -> dict[str, bool]:
    """Free what nothing references any more, then give the freed memory back: cyclic garbage
    collected, CUDA's cached blocks emptied (when CUDA was used), glibc's free pages returned.
    Call it where a run's model, optimizer and data are no longer referenced. Returns what
    was done (``cuda_emptied``; ``trimmed``: glibc was asked)."""
    gc.collect()
    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
    return {"cuda_emptied": cuda, "trimmed": trim is not None}
