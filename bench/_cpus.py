"""Which cores a benchmark's processes run on: the service under test on one, its load
generators on the others, so a side-by-side figure does not hang on which core each process
happened to land on (on this shared machine one core can run slower than the other for a
whole run) and the generator never takes the service's core."""

from __future__ import annotations

import contextlib
import os


def split_cpus() -> tuple[set[int], set[int]] | None:
    """(the servers' CPU, the clients' CPUs), or None where affinity cannot be set or there
    is one core."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    return ({cpus[0]}, set(cpus[1:])) if len(cpus) >= 2 else None


def pin(pid: int, cpus: set[int]) -> None:
    """Every thread of a running process (affinity is per thread; new ones inherit it)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(ProcessLookupError):  # a thread that just ended
            os.sched_setaffinity(int(tid), cpus)
