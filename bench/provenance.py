"""Where a benchmark figure comes from: the commit it was measured at, the date, and the CPU.

Every bench script passes its results through `stamp` before it writes them to bench/results, so
each JSON carries `"commit"` (git rev-parse HEAD, with "-dirty" when tracked code had uncommitted
changes), `"date"` (UTC, ISO 8601) and `"cpu"` (model name and logical CPU count).
"""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def commit() -> str:
    """HEAD, "-dirty" appended when tracked files differ from it. Results files are left out of the
    check: one bench run rewriting its JSON does not change the code the next one measures."""
    head = _git("rev-parse", "HEAD")
    if head is None:
        return "unknown"
    changes = _git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)bench/results")
    return head + ("-dirty" if changes else "")


def cpu() -> dict:
    """The CPU's model name (from /proc/cpuinfo on Linux) and the logical CPUs this process may use."""
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"model": name, "count": count}


def provenance() -> dict:
    return {"commit": commit(), "date": datetime.now(UTC).isoformat(timespec="seconds"), "cpu": cpu()}


def stamp(result: dict, parts: Iterable[str] = ()) -> dict:
    """Add this run's provenance to `result` (in place; returned too). A results file that merges parts
    measured in different runs names the parts this run measured: each keeps its own under "parts"."""
    here = provenance()
    result.update(here)
    for part in parts:
        result.setdefault("parts", {})[part] = here
    return result
