"""The gRPC services pick gRPC's I/O engine before grpc loads (common.grpc_io)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from common.grpc_io import IOMGR_IO_EXPERIMENTS


def _run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != "GRPC_EXPERIMENTS"}
    return subprocess.run([sys.executable, "-c", code], env={**base, **env}, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("service", ["gateway", "router"])
def test_service_entry_point_sets_the_experiments_before_grpc_loads(service: str) -> None:
    # Importing the entry module (as `python -m` does, short of calling main) must leave grpc loaded
    # and GRPC_EXPERIMENTS set; use_iomgr_io raises if grpc had loaded first.
    result = _run(f"import os, sys, {service}.__main__; print('grpc' in sys.modules, os.environ['GRPC_EXPERIMENTS'])")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", IOMGR_IO_EXPERIMENTS]


def test_an_operators_own_experiments_win() -> None:
    result = _run(
        "import os, router.__main__; print(os.environ['GRPC_EXPERIMENTS'])", GRPC_EXPERIMENTS="-tcp_rcv_lowat"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "-tcp_rcv_lowat"


def test_too_late_once_grpc_is_loaded() -> None:
    result = _run("import grpc; from common.grpc_io import use_iomgr_io; use_iomgr_io()")
    assert result.returncode != 0
    assert "before grpc is imported" in result.stderr
