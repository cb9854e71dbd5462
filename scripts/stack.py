"""Start the four services as local processes: ``run`` (foreground, logs, Ctrl-C stops all),
``up`` (background, returns once the gateway is ready) and ``down``.

    python -m scripts.stack run|up|down

The same ``Stack`` class starts the services for the end-to-end tests and the benchmarks.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN_DIR = ROOT / ".run"
SERVICES = ("router", "workers", "accounting", "gateway")  # start order: dependencies first
# ``make run`` / ``make up`` only (the README says so): the admin API's master key of a development
# stack. Nothing else has a default master key; an operator's own MODELROUTER_MASTER_KEY wins.
DEV_MASTER_KEY = "sk-modelrouter-master-dev"


def dev_env() -> dict[str, str]:
    return {"MODELROUTER_MASTER_KEY": os.environ.get("MODELROUTER_MASTER_KEY") or DEV_MASTER_KEY}


@dataclass
class Ports:
    gateway: int = 8000
    router: int = 50051
    workers_health: int = 8081
    accounting_health: int = 8082


def source_path(root: Path = ROOT) -> str:
    """The ``PYTHONPATH`` of the services in the source tree at ``root``."""
    return os.pathsep.join(str(root / p) for p in ("libs", "libs/protos", "services"))


def service_env(ports: Ports, base: Mapping[str, str] | None = None, root: Path = ROOT) -> dict[str, str]:
    """``root``: the source tree the services run from (another commit's, for the bench's baseline)."""
    env = dict(os.environ if base is None else base)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env["PYTHONPATH"] = source_path(root)
    env["GATEWAY_PORT"] = str(ports.gateway)
    env["ROUTER_LISTEN"] = f"127.0.0.1:{ports.router}"
    env["ROUTER_ADDR"] = f"127.0.0.1:{ports.router}"
    return env


def _health_port(service: str, ports: Ports) -> str | None:
    return {"workers": str(ports.workers_health), "accounting": str(ports.accounting_health)}.get(service)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _grpc_serving(address: str) -> bool:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
        except grpc.RpcError:
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


@dataclass
class Stack:
    """The four services as child processes, with their output in ``log_dir/<service>.log``."""

    ports: Ports = field(default_factory=Ports)
    env: dict[str, str] = field(default_factory=dict)
    log_dir: Path = RUN_DIR
    python: str = sys.executable
    root: Path = ROOT  # the source tree the services run from
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    # Which port each process of a service is told to listen on, and reached at for readiness.
    ports_of: dict[str, int] = field(default_factory=dict)

    def start(self, services: tuple[str, ...] = SERVICES, timeout: float = 30.0) -> None:
        for service in services:
            port = {"gateway": self.ports.gateway, "router": self.ports.router}.get(service)
            self._spawn(service, service, port or int(_health_port(service, self.ports) or 0), timeout)

    def start_replica(
        self, service: str, name: str, port: int, timeout: float = 30.0, env: Mapping[str, str] | None = None
    ) -> None:
        """One more process of ``service`` beside the stack's (a second worker, a third gateway),
        listening on ``port`` (its health port for workers and accounting), as ``procs[name]`` with
        its own log and ``env`` added (a gateway's own ``ROUTER_ADDR``); ``stop`` stops it with the rest."""
        self._spawn(service, name, port, timeout, env)

    def _spawn(
        self, service: str, name: str, port: int, timeout: float, extra: Mapping[str, str] | None = None
    ) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = service_env(self.ports, {**os.environ, **self.env}, self.root)
        env.update(extra or {})
        if service == "gateway":
            env["GATEWAY_PORT"] = str(port)
        elif service == "router":
            env["ROUTER_LISTEN"] = f"127.0.0.1:{port}"
        elif port:
            env["HEALTH_PORT"] = str(port)
        log = (self.log_dir / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(
            [self.python, "-m", service], cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        self.ports_of[name] = port
        self.wait_ready(name, timeout, service)

    def is_ready(self, name: str, service: str | None = None) -> bool:
        service, port = service or name, self.ports_of[name]
        if service == "router":
            return _grpc_serving(f"127.0.0.1:{port}")
        return _http_ok(f"http://127.0.0.1:{port}/ready")

    def wait_ready(self, name: str, timeout: float, service: str | None = None) -> None:
        deadline = time.monotonic() + timeout
        proc = self.procs[name]
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.tail(name)}")
            if self.is_ready(name, service):
                return
            time.sleep(0.1)
        raise RuntimeError(f"{name} not ready after {timeout}s:\n{self.tail(name)}")

    def tail(self, service: str, lines: int = 40) -> str:
        path = self.log_dir / f"{service}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def stop(self, timeout: float = 30.0) -> dict[str, int | None]:
        """SIGTERM in reverse start order (the gateway drains first); returns the exit codes."""
        codes: dict[str, int | None] = {}
        for service in reversed(list(self.procs)):
            proc = self.procs[service]
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                codes[service] = proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[service] = proc.wait()
        self.procs.clear()
        return codes


def _follow(paths: dict[str, Path], stop: threading.Event) -> None:
    """Print every service's new log lines, prefixed with its name (``make run``)."""
    handles = {name: path.open("r", errors="replace") for name, path in paths.items()}
    for handle in handles.values():
        handle.seek(0, os.SEEK_END)
    while not stop.is_set():
        idle = True
        for name, handle in handles.items():
            for line in iter(handle.readline, ""):
                idle = False
                sys.stdout.write(f"{name:<10} | {line}")
        sys.stdout.flush()
        if idle:
            time.sleep(0.1)


def run() -> int:
    stack = Stack(env=dev_env())
    paths = {s: stack.log_dir / f"{s}.log" for s in SERVICES}
    stack.log_dir.mkdir(parents=True, exist_ok=True)
    for path in paths.values():
        path.touch()
    stop = threading.Event()
    follower = threading.Thread(target=_follow, args=(paths, stop), daemon=True)
    follower.start()
    try:
        stack.start()
        print(f"ModelRouter is up: http://127.0.0.1:{stack.ports.gateway}  (Ctrl-C stops it)", flush=True)
        while all(p.poll() is None for p in stack.procs.values()):
            time.sleep(0.5)
        print("a service exited; stopping the rest", flush=True)
        return 1
    except KeyboardInterrupt:
        return 0
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        stack.stop()
        time.sleep(0.3)
        stop.set()


def up() -> int:
    stack = Stack(env=dev_env())
    try:
        stack.start()
    except RuntimeError as exc:
        print(exc, file=sys.stderr)
        stack.stop()
        return 1
    for service, proc in stack.procs.items():
        (stack.log_dir / f"{service}.pid").write_text(str(proc.pid))
    print(f"ModelRouter is up: http://127.0.0.1:{stack.ports.gateway}  (logs in {stack.log_dir}; `make down` stops it)")
    return 0


def down() -> int:
    pids = sorted(RUN_DIR.glob("*.pid"), key=lambda p: -SERVICES.index(p.stem) if p.stem in SERVICES else 0)
    for pid_file in pids:
        pid = int(pid_file.read_text())
        try:
            os.kill(pid, signal.SIGTERM)
            for _ in range(300):
                os.kill(pid, 0)
                time.sleep(0.1)
        except ProcessLookupError:
            pass
        pid_file.unlink()
    return 0


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else "run"
    raise SystemExit({"run": run, "up": up, "down": down}[command]())
