"""Child processes the benchmark starts and always stops: the mock upstream, a private NATS and
Redis (so other people's services on the shared ones neither take the bench's jobs nor add load),
and LiteLLM's proxy."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from scripts.stack import ROOT

NATS_STORE = "nats-store"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def find_binary(name: str, *fallbacks: str) -> str:
    """``name`` on PATH or at one of the usual Debian locations (sbin is not always on PATH)."""
    found = shutil.which(name) or next((f for f in fallbacks if os.access(f, os.X_OK)), None)
    if found is None:
        raise RuntimeError(f"{name} is not installed (looked on PATH and in {', '.join(fallbacks)})")
    return found


@dataclass
class ManagedProcess:
    """A child process with its output in ``log``; ready once ``ready()`` is true."""

    name: str
    command: Sequence[str]
    log: Path
    # Added to this process's environment; a None value removes the variable.
    env: dict[str, str | None] = field(default_factory=dict)
    cwd: Path = ROOT
    proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError(f"{self.name} is not running")
        return self.proc.pid

    def start(self, ready: Callable[[], bool], timeout_s: float = 30.0) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                list(self.command),
                cwd=self.cwd,
                env=self._environment(),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout_s
        while not ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} not ready after {timeout_s}s:\n{self.tail()}")
            time.sleep(0.1)

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        for name, value in self.env.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        return env

    def tail(self, lines: int = 30) -> str:
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout_s: float = 15.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def mock_upstream(workdir: Path, port: int, latency_ms: float, chunks: int, chunk_interval_ms: float) -> ManagedProcess:
    command = [
        sys.executable,
        "-m",
        "bench.mock_upstream",
        f"--port={port}",
        f"--latency-ms={latency_ms}",
        f"--chunks={chunks}",
        f"--chunk-interval-ms={chunk_interval_ms}",
    ]
    return ManagedProcess("mock-upstream", command, workdir / "mock-upstream.log")


def nats_server(workdir: Path, port: int) -> ManagedProcess:
    binary = find_binary("nats-server", "/usr/sbin/nats-server", "/usr/local/bin/nats-server")
    store = workdir / NATS_STORE
    command = [binary, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store)]
    # One OS thread for Go's scheduler: on a 2-core box shared with six other processes, the Go runtime's
    # idle threads otherwise spin on every wake-up (measured: ~0.3 ms of nats-server CPU per request
    # at concurrency 1, a quarter of its total). A NATS on its own node would not need this.
    return ManagedProcess("nats", command, workdir / "nats.log", env={"GOMAXPROCS": "1"})


def redis_server(workdir: Path, port: int) -> ManagedProcess:
    binary = find_binary("redis-server", "/usr/bin/redis-server", "/usr/local/bin/redis-server")
    command = [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
    return ManagedProcess("redis", command, workdir / "redis.log", cwd=workdir)
