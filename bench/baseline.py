"""An earlier build of ModelRouter, measured in the same run as this one (``bench.run --against REV``).

Two benches on different days, or even minutes apart on this shared VM, differ by more than most
changes cost; a target made from another commit, whose rounds alternate with this build's within
seconds, does not. The commit's source is exported with ``git archive`` (the checkout is left as it
is), its protobuf modules generated as ``make proto`` does, and its four services run with this
checkout's virtualenv against a NATS, a Redis and a database of their own (sharing them would mix the
two builds' jobs and counters), in front of the same mock upstream.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from scripts.stack import ROOT

PROTO_OUT = Path("libs") / "protos"


@dataclass(frozen=True)
class Baseline:
    revision: str  # as asked (HEAD~3, a tag, a sha)
    commit: str  # its short sha
    root: Path  # the exported source, with its protobuf modules

    @property
    def target_name(self) -> str:
        return f"modelrouter@{self.commit}"


def export(revision: str, workdir: Path) -> Baseline:
    """``revision``'s source under ``workdir``, ready to run."""
    commit = _git("rev-parse", "--short", f"{revision}^{{commit}}").strip()
    root = workdir / f"src-{commit}"
    root.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "archive", commit], cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True)
    _generate_protos(root)
    return Baseline(revision, commit, root)


def _generate_protos(root: Path) -> None:
    protos = sorted(str(p.relative_to(root / "proto")) for p in (root / "proto").rglob("*.proto"))
    out = root / PROTO_OUT
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-Iproto",
            f"--python_out={PROTO_OUT}",
            f"--pyi_out={PROTO_OUT}",
            f"--grpc_python_out={PROTO_OUT}",
            *(str(Path("proto") / p) for p in protos),
        ],
        cwd=root,
        check=True,
        capture_output=True,
    )
    for package in (out / "modelrouter").rglob("*"):
        if package.is_dir():
            (package / "__init__.py").touch()
    (out / "modelrouter" / "__init__.py").touch()


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout
