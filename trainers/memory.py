"""Hand a finished run's memory back, for a process that trains run after run.

A search worker hosts trial after trial (Ray Tune's ``reuse_actors``), each in a new thread.
Measured in such a worker (issue 24, BENCHMARKS.md §14), two things kept every trial's memory:

- **Reference cycles.** Some models point back at themselves (PHA's network holds the backbone
  whose layers hold the network): such a model is freed only when Python's cyclic collector
  runs its oldest generation, which can be several trials later.
- **The C allocator.** glibc gives threads their own malloc arenas (up to 8 per core) and keeps
  the pages of freed blocks mapped for reuse by that arena. The tensors of a trial (the
  backbone's copy, activations, optimizer state, the trial's copy of the data) are freed when it
  ends, yet the process keeps their pages: a MiniLM worker's peak went from 1.6 GB in its second
  trial to 5.3 GB by its fortieth (0.35 GB per trial at first; it levelled off near 5.5 GB
  after ~25 trials, plausibly glibc's cap of 16 arenas on 2 cores, not checked).

``release()`` collects the cycles, returns the CUDA caching allocator's free blocks to the
driver (other trials on the same GPU can then use them), and asks glibc to give free pages back
to the system (``malloc_trim``; a no-op where the C library has none, e.g. macOS or musl).

A full collection walks every object of the process: 0.1-0.26 s in a worker that has imported
torch, transformers, peft and Ray (~500,000 objects). So, where no run is under way, a
collection slower than ``FREEZE_AFTER_S`` moves its survivors (the modules, the worker's own
state) into the collector's permanent generation (``gc.freeze``; reference counting still frees
them as usual): later collections walk only what the runs create. A search worker freezes at
the start of its first trials, and again only when a later trial imported enough to make
collections slow (another method's modules).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import time
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


def anon_gb(pid: int | str = "self", proportional: bool = False) -> float | None:
    """Private anonymous memory (the heap, not shared libraries or shared memory) of process
    ``pid`` in GB: ``RssAnon`` of ``/proc/PID/status`` (counters: microseconds to read), or with
    ``proportional`` ``Pss_Anon`` of ``/proc/PID/smaps_rollup`` (the kernel walks the page
    tables: ~10 ms for a worker that has imported torch). None where the file is missing (not
    Linux, an exited process)."""
    path, key = (f"/proc/{pid}/smaps_rollup", "Pss_Anon:") if proportional else (f"/proc/{pid}/status",
                                                                                  "RssAnon:")
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1]) / 2**20
    except OSError:
        return None
    return None


FREEZE_AFTER_S = 0.02
"""A collection slower than this, with ``freeze_survivors``, freezes what survived it."""


def release(freeze_survivors: bool = False) -> dict[str, bool]:
    """Free what nothing references any more, then give the freed memory back: cyclic garbage
    collected, CUDA's cached blocks emptied (when CUDA was used), glibc's free pages returned.
    Call it where a run's model, optimizer and data are no longer referenced. With
    ``freeze_survivors`` (where no run is under way), a slow collection freezes what survived.
    Returns what was done (``cuda_emptied``; ``trimmed``: glibc was asked; ``froze``)."""
    started = time.perf_counter()
    gc.collect()
    froze = freeze_survivors and time.perf_counter() - started > FREEZE_AFTER_S
    if froze:
        gc.freeze()
    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
    return {"cuda_emptied": cuda, "trimmed": trim_heap(), "froze": froze}


def trim_heap() -> bool:
    """Ask glibc to return the free pages of every arena to the system (``malloc_trim(0)``);
    False where the C library has no such call."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
