"""``--budget DURATION``: what a search may spend, and the ledger of what it has spent.

The budget is *trial-time*: the sum of the seconds that trials, confirmation runs and their
set-up hold a slot. Two trials that run side by side for 10 s charge 20 s. That is what a budget
means on a cluster (GPU-hours), and it means the same on a laptop with one slot and on 16 GPUs:
the number of slots changes how long the search takes on the clock, not what it buys.

Why a ledger of reported slot-seconds rather than a clock: Tune's ``time_budget_s`` counts wall
time, so the time an experiment was stopped counts against it when it resumes (ray#21038), and it
stops running trials without their result (ray#34136). Here only seconds that a run *reports*
having held a slot are charged, so a search stopped overnight and resumed with ``--resume``
continues with exactly what was left: the ledger is saved as JSON after every charge (atomically,
so a kill mid-write leaves the previous ledger) and loaded on resume.

Tune can send a trial's last result again after a restore; every charge therefore carries a key
(run id, report index) and a key already charged is not charged again.

``--deadline DURATION`` adds a wall clock beside the budget: from the invocation's start (a resume
starts a new one), what is left is also at most the slots times the time to the deadline, and no
run starts that the deadline would not see end (its estimate with ``LOAD_MARGIN``, and
``STOP_AHEAD_S`` to spare), and whatever still runs ``STOP_AHEAD_S`` before it is stopped. It is a
cap, not a second budget: the trial-time charged is the same ledger.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

KINDS = ("trial", "confirm", "setup", "interrupted")
"""What a charge paid for: a search trial's training and evaluations, a confirmation (racing)
run, the start of either (model load, data, Ray actor) that precedes its first report, or what
runs held unreported when Ctrl-C stopped the search (``--resume`` runs that part again)."""

LOAD_MARGIN = 1.1
"""A run's estimate (from what the search measured) times this must fit what is left: a machine
running somewhat slower than when it was measured does not make a run end after the budget or
the deadline."""

STOP_AHEAD_S = 2.0
"""How long before ``--deadline`` the runs still going are stopped. Tune acts on a stop between the
steps of its loop, and on a busy 2-core machine a step took seconds: a CI run's last report came
1-2 s after a deadline that every run had been estimated to end before."""

_EXAMPLE = "e.g. 2h, 45m, 90s, 1h30m, 1.5h or 3600 (seconds)"
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0}
_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?")


def parse_duration(text: str, flag: str = "--budget") -> float:
    """``"1h30m"`` -> 5400.0 seconds. Accepts hours/minutes/seconds parts in that order (each at
    most once, decimals allowed: ``1.5h``) or a plain number of seconds. Anything else, zero, a
    negative or a non-finite value raises ``ValueError`` with one line naming ``flag``."""
    raw = str(text)
    s = raw.strip().lower().replace(" ", "")
    seconds: float | None = None
    try:
        seconds = float(s)  # plain seconds; also catches "-5", "inf", "nan" for the checks below
    except ValueError:
        m = _DURATION.fullmatch(s)
        if s and m is not None and any(m.groups()):
            seconds = sum(float(v) * unit for v, unit in zip(m.groups(), _UNITS.values(), strict=True) if v)
    if seconds is None or not math.isfinite(seconds):
        raise ValueError(f"{flag} {raw!r}: not a duration; {_EXAMPLE}")
    if seconds <= 0:
        raise ValueError(f"{flag} {raw!r}: must be more than zero; {_EXAMPLE}")
    return seconds


def format_duration(seconds: float) -> str:
    """A short human form that ``parse_duration`` reads back: 5400 -> ``1h30m``, 95 -> ``1m35s``."""
    total = int(round(max(0.0, seconds)))
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}h{m:02d}m" if m else f"{h}h"
    if m:
        return f"{m}m{s:02d}s" if s else f"{m}m"
    return f"{s}s"


def _atomic_write(path: Path, text: str) -> None:
    """Write through a temporary file in the same folder and ``os.replace`` it over ``path``, so
    a reader (or a resume after a kill) sees either the old ledger or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class Ledger:
    """Trial-time spent against a budget, by (kind, method), charged once per report.

    ``charge`` takes the seconds a run held its slot since its previous report (Tune's
    ``time_this_iter_s``; for set-up, the seconds before the first report) under a key (run id,
    report index). The index is the report's position in the run (Tune's ``training_iteration``):
    a result re-sent after a restore carries the same index and is ignored. Work that a trial
    *redoes* after restoring an earlier checkpoint reuses indexes too; a caller that wants it
    charged qualifies the run id with the restore count (``"trial_3/r1"``).
    """

    VERSION = 1

    def __init__(self, budget_s: float, path: str | Path | None = None) -> None:
        if not (math.isfinite(budget_s) and budget_s > 0):
            raise ValueError(f"budget must be a positive number of seconds, not {budget_s!r}")
        self.budget_s = float(budget_s)
        self.path = Path(path) if path is not None else None
        """Where ``save()`` writes (after every charge when set); None keeps it in memory."""
        self._spent: dict[tuple[str, str], float] = {}
        self._charged: dict[str, set[int]] = {}
        self.deadline_at: float | None = None
        """``--deadline``: the wall-clock time (epoch seconds) by which every run must have ended."""
        self.slots = 1
        """Runs at once under the deadline: the trial-time it leaves is slots x its seconds left."""

    def set_deadline(self, at: float | None, slots: int) -> None:
        """Every run to end by ``at`` (epoch seconds; None: no deadline), on ``slots`` slots."""
        if at is not None and not math.isfinite(at):
            raise ValueError(f"deadline must be a finite time, not {at!r}")
        self.deadline_at, self.slots = at, max(1, int(slots))
        if self.path is not None:
            self.save()

    @property
    def wall_left(self) -> float:
        """Seconds to the deadline (inf without one; negative once past)."""
        return math.inf if self.deadline_at is None else self.deadline_at - time.time()

    # -- charging ---------------------------------------------------------------------------
    def charge(self, kind: str, method: str, seconds: float, *, run_id: str, index: int) -> bool:
        """Charge ``seconds`` of slot time for report ``index`` of run ``run_id``. Returns False
        (and charges nothing) when that report was charged before. Saves when ``path`` is set."""
        if kind not in KINDS:
            raise ValueError(f"charge kind {kind!r}: expected one of {', '.join(KINDS)}")
        seconds = float(seconds)
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"charge of {seconds!r} s for {run_id}#{index}: must be finite and >= 0")
        seen = self._charged.setdefault(str(run_id), set())
        if int(index) in seen:
            return False
        seen.add(int(index))
        key = (kind, method)
        self._spent[key] = self._spent.get(key, 0.0) + seconds
        if self.path is not None:
            self.save()
        return True

    def charged(self, run_id: str, index: int) -> bool:
        """Whether report ``index`` of ``run_id`` has been charged."""
        return int(index) in self._charged.get(str(run_id), ())

    # -- reading ----------------------------------------------------------------------------
    @property
    def used(self) -> float:
        """Seconds charged so far, all kinds and methods."""
        return sum(self._spent.values())

    @property
    def left(self) -> float:
        """Seconds of the budget not yet charged (negative once overspent); with a deadline, at
        most the slots times the seconds to it."""
        return min(self.budget_s - self.used, self.slots * self.wall_left)

    @property
    def budget_left(self) -> float:
        """Seconds of the budget not yet charged, whatever the deadline (negative once overspent)."""
        return self.budget_s - self.used

    def past_deadline(self, now: float | None = None) -> bool:
        """Is it time to stop what still runs: ``STOP_AHEAD_S`` before ``--deadline`` (never without)."""
        now = time.time() if now is None else now
        return self.deadline_at is not None and now >= self.deadline_at - STOP_AHEAD_S

    @property
    def share_used(self) -> float:
        """``used / budget``: 1.0 when the budget is spent exactly."""
        return self.used / self.budget_s

    def fits(self, seconds: float, *, committed: float = 0.0, wall: float | None = None) -> bool:
        """Would a run estimated to hold a slot ``seconds`` more still end inside the budget?
        ``committed``: seconds the runs already going are expected to charge before they end, so
        a new start does not count on time that running trials will take. With a deadline it must
        also end before it: ``wall``, the seconds it takes on the clock (default ``seconds``: one
        run holds one slot), times ``LOAD_MARGIN``, must end ``STOP_AHEAD_S`` before it."""
        clock = seconds if wall is None else wall
        return (max(0.0, committed) + max(0.0, seconds) <= self.left
                and (self.deadline_at is None
                     or LOAD_MARGIN * max(0.0, clock) + STOP_AHEAD_S <= self.wall_left))

    def spent(self, kind: str | None = None, method: str | None = None) -> float:
        """Seconds charged to ``kind`` and/or ``method`` (None: all)."""
        return sum(v for (k, m), v in self._spent.items()
                   if (kind is None or k == kind) and (method is None or m == method))

    def by_method(self) -> dict[str, float]:
        """Seconds charged per method, all kinds."""
        out: dict[str, float] = {}
        for (_, m), v in self._spent.items():
            out[m] = out.get(m, 0.0) + v
        return out

    def methods(self) -> Iterable[str]:
        return self.by_method().keys()

    # -- persistence ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"version": self.VERSION, "budget_s": self.budget_s,
                "deadline_at": self.deadline_at, "slots": self.slots,
                "spent": [{"kind": k, "method": m, "seconds": v}
                          for (k, m), v in sorted(self._spent.items())],
                "charged": {run: sorted(idx) for run, idx in sorted(self._charged.items())}}

    @classmethod
    def from_dict(cls, data: dict[str, Any], path: str | Path | None = None) -> Ledger:
        if data.get("version") != cls.VERSION:
            raise ValueError(f"budget ledger version {data.get('version')!r}: expected {cls.VERSION}")
        ledger = cls(float(data["budget_s"]), path)
        for row in data.get("spent", []):
            ledger._spent[(row["kind"], row["method"])] = float(row["seconds"])
        ledger._charged = {run: {int(i) for i in idx} for run, idx in data.get("charged", {}).items()}
        ledger.deadline_at, ledger.slots = data.get("deadline_at"), int(data.get("slots", 1))
        return ledger

    def save(self, path: str | Path | None = None) -> Path:
        """Write the ledger as JSON (temp file + ``os.replace``); returns the path written."""
        target = Path(path) if path is not None else self.path
        if target is None:
            raise ValueError("Ledger.save: no path given and none set")
        _atomic_write(target, json.dumps(self.to_dict(), indent=1))
        return target

    @classmethod
    def load(cls, path: str | Path) -> Ledger:
        """The ledger saved at ``path``, which keeps saving there: ``--resume`` continues with
        what was left. Only charges are stored, so time the search was stopped costs nothing."""
        return cls.from_dict(json.loads(Path(path).read_text()), path)

    def describe(self) -> str:
        """One line: ``budget 2h: used 1h12m (60%), left 48m`` (and the deadline's time left)."""
        clock = "" if self.deadline_at is None else f"; deadline in {format_duration(self.wall_left)}"
        return (f"budget {format_duration(self.budget_s)}: used {format_duration(self.used)} "
                f"({100 * self.share_used:.0f}%), left {format_duration(max(0.0, self.left))}{clock}")
