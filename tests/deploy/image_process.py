"""Run an image's command as a plain process on its assembled file tree (image_tree), with exactly
the environment given: the interpreter is the project's venv (standing for /opt/venv), and the dev
install's source roots are taken off sys.path, so only files the image would hold can be imported.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.deploy.dockerfile_model import REPO, DockerfileModel

# The folders `make install` puts on the venv's path (modelrouter-src.pth).
DEV_SOURCE_ROOTS = [str(REPO / p) for p in ("", "libs", "libs/protos", "services")]
_BOOTSTRAP = """
import runpy, sys
drop = {p.rstrip("/") for p in sys.argv[1].split("|")}
sys.path[:] = [p for p in sys.path if p.rstrip("/") not in drop]
module, sys.argv = sys.argv[2], sys.argv[2:]
runpy.run_module(module, run_name="__main__", alter_sys=True)
"""


def image_env(model: DockerfileModel, target: str, root: Path) -> dict[str, str]:
    """What the image's ENV contributes besides service settings: PATH and PYTHONPATH (pointed at
    the venv and the assembled tree) and the interpreter's PYTHON* switches (no .pyc writes)."""
    image = model.env(target)
    env = {k: v for k, v in image.items() if k.startswith("PYTHON")}
    env["PYTHONPATH"] = os.pathsep.join(str(root / p.lstrip("/")) for p in image["PYTHONPATH"].split(":"))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}/usr/bin{os.pathsep}/bin"
    return env


def python_command(argv: list[str]) -> list[str]:
    """``python -m module args`` from an image, run by the venv's interpreter through the bootstrap."""
    assert argv[:2] == ["python", "-m"], f"not a `python -m` command: {argv}"
    return [sys.executable, "-c", _BOOTSTRAP, "|".join(DEV_SOURCE_ROOTS), *argv[2:]]


def run_to_completion(
    argv: list[str], cwd: Path, env: Mapping[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(python_command(argv), cwd=cwd, env=dict(env), capture_output=True, text=True, timeout=timeout)


@dataclass
class Running:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def wait_until(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited ({self.proc.returncode}) before {what}:\n{self.output()}")
            if condition():
                return
            time.sleep(0.1)
        raise AssertionError(f"{self.name}: not {what} after {timeout}s:\n{self.output()}")

    def terminate(self, timeout: float = 30) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"{self.name} ignored SIGTERM for {timeout}s:\n{self.output()}") from None


@contextmanager
def started(name: str, argv: list[str], cwd: Path, env: Mapping[str, str], log_dir: Path) -> Iterator[Running]:
    log = log_dir / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(python_command(argv), cwd=cwd, env=dict(env), stdout=out, stderr=subprocess.STDOUT)
    running = Running(name, proc, log)
    try:
        yield running
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return 200 <= int(response.status) < 300
    except (urllib.error.URLError, OSError):
        return False


def grpc_serving(address: str) -> bool:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
        except grpc.RpcError:
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)
