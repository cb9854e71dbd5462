"""What the numbers were taken on, and how busy the machine was with other work meanwhile."""

from __future__ import annotations

import os
import platform
import subprocess
import timeit
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import procstat

# Other work using more than this many cores on average makes the run's numbers provisional.
BUSY_CORES = 0.25


def _first(path: str, prefix: str) -> str:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(prefix):
                return line.split(":", 1)[1].strip() if ":" in line else line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return "unknown"


def wrk_version() -> str:
    try:
        done = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=5)
    except OSError:
        return "not installed"
    return (done.stdout or done.stderr).splitlines()[0].strip() if (done.stdout or done.stderr) else "unknown"


def python_speed_us() -> float:
    """Microseconds for ``sum(range(1000))``: a rough yardstick for comparing machines' single-core speed."""
    return min(timeit.repeat("sum(range(1000))", number=2000, repeat=5)) / 2000 * 1e6


def describe() -> dict[str, Any]:
    mem_kib = int(_first("/proc/meminfo", "MemTotal").split()[0]) if Path("/proc/meminfo").exists() else 0
    return {
        "cpu": _first("/proc/cpuinfo", "model name"),
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "os": _first("/etc/os-release", "PRETTY_NAME="),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "python_speed_us": round(python_speed_us(), 1),
        "wrk": wrk_version(),
        "load_average_at_start": list(os.getloadavg()),
    }


@dataclass
class OtherLoad:
    """CPU the rest of the machine used while the bench ran: all busy time minus the bench's own
    processes (harness, wrk and every process it started)."""

    busy_start: float = 0.0
    wall_start: float = 0.0
    ours_start: float = 0.0
    pids: list[int] = field(default_factory=list)

    def _ours(self, pids: Iterable[int]) -> float:
        times = os.times()
        return (
            times.user
            + times.system
            + times.children_user
            + times.children_system
            + sum(procstat.cpu_seconds(pid) for pid in pids)
        )

    def start(self, pids: Iterable[int]) -> None:
        self.pids = list(pids)
        self.busy_start, self.wall_start = procstat.machine_busy_seconds()
        self.ours_start = self._ours(self.pids)

    def cores(self) -> float:
        """Average cores used by other work since ``start``."""
        busy, wall = procstat.machine_busy_seconds()
        elapsed = (wall - self.wall_start) / (os.cpu_count() or 1)
        if elapsed <= 0:
            return 0.0
        ours = self._ours(self.pids) - self.ours_start
        return max(0.0, (busy - self.busy_start - ours) / elapsed)
