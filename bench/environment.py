"""Everything a measurement needs running: the mock upstream, a private NATS and Redis, ModelRouter's
four services pointed at the mock, and (optionally) LiteLLM's proxy — all stopped on exit."""

from __future__ import annotations

import contextlib
import functools
import logging
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench import litellm_proxy, processes
from bench.baseline import Baseline, export
from bench.modelrouter_stack import UPSTREAM_MODEL, governed_target, prepare_database, start_modelrouter
from bench.phases import check_target
from bench.targets import DIRECT, MODELROUTER, Target
from scripts.stack import ROOT, Ports, Stack

log = logging.getLogger("bench")


@dataclass(frozen=True)
class Upstream:
    latency_ms: float = 0.0
    chunks: int = 20
    chunk_interval_ms: float = 1.0


@dataclass
class Environment:
    direct: Target
    modelrouter: Target
    litellm: Target | None
    governed: Target | None = None
    redis_port: int = 0  # the private Redis the routers share
    baseline: Target | None = None  # an earlier commit's build (bench.baseline)

    @property
    def targets(self) -> list[Target]:
        # The baseline last: the other targets keep the neighbours they have without one (a target's
        # round follows the previous one's accounting, still writing), so their goals' conditions hold.
        candidates = (self.direct, self.modelrouter, self.governed, self.litellm, self.baseline)
        return [t for t in candidates if t is not None]


def _stop_stack(stack: Stack) -> None:
    codes = stack.stop()
    if any(code != 0 for code in codes.values()):
        log.warning("ModelRouter services exited with %s", codes)


def _nats_and_redis(workdir: Path, cleanup: contextlib.ExitStack) -> tuple[int, int, dict[str, int]]:
    """A private NATS (its store under ``workdir``) and Redis: their ports and pids."""
    workdir.mkdir(parents=True, exist_ok=True)
    nats_port, redis_port = processes.free_port(), processes.free_port()
    nats = processes.nats_server(workdir, nats_port)
    redis = processes.redis_server(workdir, redis_port)
    # Runs after NATS stops (callbacks unwind last-in first-out): its message store is tens of MB a run.
    cleanup.callback(shutil.rmtree, workdir / processes.NATS_STORE, ignore_errors=True)
    for proc, port in ((nats, nats_port), (redis, redis_port)):
        cleanup.callback(proc.stop)
        proc.start(functools.partial(processes.port_open, port))
    return nats_port, redis_port, {"nats-server": nats.pid, "redis": redis.pid}


def _modelrouter(
    workdir: Path,
    mock: processes.ManagedProcess,
    mock_port: int,
    database_url: str,
    recreate_database: bool,
    cleanup: contextlib.ExitStack,
    baseline: Baseline | None = None,
) -> tuple[Target, int]:
    """A ModelRouter stack (this checkout's, or ``baseline``'s) with its own NATS and Redis, in front
    of ``mock``: its target and its Redis port."""
    nats_port, redis_port, backing = _nats_and_redis(workdir, cleanup)
    root, name = (baseline.root, baseline.target_name) if baseline else (ROOT, MODELROUTER)
    log.info("%s: NATS on %d, Redis on %d", name, nats_port, redis_port)
    prepare_database(database_url, recreate_database, root)
    stack, target = start_modelrouter(
        workdir,
        mock_port,
        Ports(*(processes.free_port() for _ in range(4))),
        f"redis://127.0.0.1:{redis_port}/0",
        f"nats://127.0.0.1:{nats_port}",
        database_url,
        root=root,
        name=name,
    )
    cleanup.callback(_stop_stack, stack)
    target.backing_pids = {"mock-upstream": mock.pid, **backing}
    return target, redis_port


@contextlib.contextmanager
def running(
    workdir: Path,
    upstream: Upstream,
    database_url: str,
    recreate_database: bool,
    with_litellm: bool,
    against: str | None = None,
) -> Iterator[Environment]:
    """Start everything, check each target answers a plain and a streamed request correctly, and
    yield; on exit stop all of it (ModelRouter with SIGTERM, so it drains as in production).
    ``against``: a git revision whose build runs beside this one (``bench.baseline``)."""
    workdir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as cleanup:
        mock_port = processes.free_port()
        mock = processes.mock_upstream(
            workdir, mock_port, upstream.latency_ms, upstream.chunks, upstream.chunk_interval_ms
        )
        cleanup.callback(mock.stop)
        mock.start(functools.partial(processes.port_open, mock_port))
        log.info("mock upstream on %d", mock_port)
        modelrouter, redis_port = _modelrouter(workdir, mock, mock_port, database_url, recreate_database, cleanup)
        baseline: Target | None = None
        if against is not None:  # its own database beside the bench's, always made afresh
            source = export(against, workdir / "baseline")
            database = f"{database_url}_baseline"
            baseline, _ = _modelrouter(workdir / "baseline", mock, mock_port, database, True, cleanup, source)
        direct = Target(DIRECT, mock_port, UPSTREAM_MODEL, None, {"mock-upstream": mock.pid})
        litellm: Target | None = None
        if with_litellm:
            proxy, litellm = litellm_proxy.start_litellm(workdir, mock_port, processes.free_port())
            cleanup.callback(proxy.stop)
            litellm.backing_pids = {"mock-upstream": mock.pid}
        governed = governed_target(modelrouter)
        governed.backing_pids = modelrouter.backing_pids
        environment = Environment(direct, modelrouter, litellm, governed, redis_port, baseline)
        for target in environment.targets:
            target.write_bodies(workdir)
            check_target(target, upstream.chunks)
        log.info("all targets answer correctly: %s", ", ".join(t.name for t in environment.targets))
        yield environment
