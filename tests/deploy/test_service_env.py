"""Each service starts, as a plain process, with exactly the environment its Kubernetes manifests
give it (the base's ConfigMaps and Secret keys) plus what its image's ENV sets for the interpreter
(PATH, PYTHONPATH, PYTHON* switches) and nothing a developer's machine adds, on the files its image
would hold; it becomes ready on the probe the manifest names, the image's HEALTHCHECK
passes, and SIGTERM stops it with exit status 0. The migration Job runs the same way.

Only addresses change: Secret values are local URLs (Redis, a private NATS, a fresh database),
listen hosts become 127.0.0.1 and container ports become free local ports. The optional Secrets
(provider keys, API_KEYS) are absent, as in a cluster where nobody created them.
"""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.deploy.conftest import free_port
from tests.deploy.dockerfile_model import SERVICES
from tests.deploy.dockerfile_model import load as load_dockerfile
from tests.deploy.image_process import Running, grpc_serving, http_ok, image_env, run_to_completion, started
from tests.deploy.tools import find, of_kind, pod_spec, render

pytestmark = [pytest.mark.deploy, pytest.mark.integration]

READY_TIMEOUT_S = 30.0
METRIC_PREFIX = {"gateway": "gateway", "router": "router", "workers": "worker", "accounting": "accounting"}
# Settings that name where the process listens or whom it calls inside the cluster.
LISTEN_HOSTS = ("GATEWAY_HOST", "HEALTH_HOST", "METRICS_HOST")
LISTEN_PORTS = ("GATEWAY_PORT", "HEALTH_PORT", "METRICS_PORT")
LISTEN_ADDRESSES = ("ROUTER_LISTEN",)
PEER_ADDRESSES = ("ROUTER_ADDR",)


@dataclass
class Pod:
    """One manifest container made local: its environment and its container ports' local ports."""

    service: str
    container: dict[str, Any]
    env: dict[str, str]
    ports: dict[int, int]

    def port(self, ref: int | str) -> int:
        if isinstance(ref, str):
            ref = next(p["containerPort"] for p in self.container["ports"] if p["name"] == ref)
        return self.ports[int(ref)]

    def ready(self) -> bool:
        return _probe_ok(self, self.container["readinessProbe"])

    def alive(self) -> bool:
        return _probe_ok(self, self.container["livenessProbe"])


def _probe_ok(pod: Pod, probe: dict[str, Any]) -> bool:
    if "grpc" in probe:
        return grpc_serving(f"127.0.0.1:{pod.port(probe['grpc']['port'])}")
    http = probe["httpGet"]
    return http_ok(f"http://127.0.0.1:{pod.port(http['port'])}{http['path']}")


def manifest_env(docs: list[dict[str, Any]], container: dict[str, Any], secrets: dict[str, str]) -> dict[str, str]:
    """The variables a container gets: ConfigMap data, literal values, and Secret keys (local values)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(find(docs, "ConfigMap", source["configMapRef"]["name"])["data"])
        else:
            ref = source["secretRef"]
            assert ref.get("optional"), f"a required envFrom Secret ({ref['name']}) hides which variables it sets"
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
            continue
        ref = item["valueFrom"]["secretKeyRef"]
        if ref.get("optional"):
            continue
        assert ref["key"] in secrets, f"no local value for Secret {ref['name']} key {ref['key']}"
        env[item["name"]] = secrets[ref["key"]]
    return env


def localize(env: dict[str, str], ports: dict[int, int], peers: dict[str, str]) -> dict[str, str]:
    out = dict(env)
    for name in LISTEN_HOSTS:
        if name in out:
            assert out[name] == "0.0.0.0", f"{name}={out[name]}: a container must listen on all interfaces"
            out[name] = "127.0.0.1"
    for name in LISTEN_PORTS:
        if name in out:
            out[name] = str(ports[int(out[name])])
    for name in LISTEN_ADDRESSES:
        if name in out:
            host, _, port = out[name].rpartition(":")
            assert host == "0.0.0.0", f"{name}={out[name]}"
            out[name] = f"127.0.0.1:{ports[int(port)]}"
    for name in PEER_ADDRESSES:
        if name in out:
            assert out[name] in peers, f"{name}={out[name]} is not a Service started for this check"
            out[name] = peers[out[name]]
    return out


def _service_addresses(docs: list[dict[str, Any]]) -> set[str]:
    return {f"{s['metadata']['name']}:{p['port']}" for s in of_kind(docs, "Service") for p in s["spec"]["ports"]}


@pytest.fixture(scope="module")
def secrets(redis_url: str, private_nats_url: str, new_database: Callable[[], str]) -> dict[str, str]:
    return {"REDIS_URL": redis_url, "NATS_URL": private_nats_url, "DATABASE_URL": new_database()}


@pytest.fixture(scope="module")
def migrated(secrets: dict[str, str], image_roots: dict[str, Path]) -> None:
    """Runs the migration Job (as test_migration_job checks it) on the services' database."""
    job = render("base")
    container = pod_spec(find(job, "Job", "migrate"))["containers"][0]
    result = _run_job(container, secrets, image_roots)
    assert result.returncode == 0, result.stderr


def _run_job(
    container: dict[str, Any], secrets: dict[str, str], image_roots: dict[str, Path]
) -> subprocess.CompletedProcess[str]:
    model = load_dockerfile()
    root = image_roots["migrate"]
    env = {**manifest_env(render("base"), container, secrets), **image_env(model, "migrate", root)}
    argv = container.get("command") or model.cmd("migrate")
    return run_to_completion(argv, root / model.workdir("migrate").lstrip("/"), env)


@contextmanager
def run_service(
    service: str, secrets: dict[str, str], image_roots: dict[str, Path], log_dir: Path, peers: dict[str, str]
) -> Iterator[tuple[Running, Pod]]:
    docs = render("base")
    model = load_dockerfile()
    container = pod_spec(find(docs, "Deployment", service))["containers"][0]
    assert "command" not in container and "args" not in container, "the image's CMD is what runs"
    ports = {int(p["containerPort"]): free_port() for p in container["ports"]}
    env = localize(manifest_env(docs, container, secrets), ports, peers)
    # Nothing that still names the cluster may remain: every address was made local above.
    cluster = _service_addresses(docs)
    leftover = {k: v for k, v in env.items() if "0.0.0.0" in v or any(a in v for a in cluster)}
    assert not leftover, f"{service}: cluster addresses left unlocalized: {leftover}"
    root = image_roots[service]
    env.update(image_env(model, service, root))
    cwd = root / model.workdir(service).lstrip("/")
    with started(service, model.cmd(service), cwd, env, log_dir) as running:
        pod = Pod(service, container, env, ports)
        running.wait_until(pod.ready, READY_TIMEOUT_S, "ready (readinessProbe)")
        yield running, pod


def _image_healthcheck(service: str, pod: Pod, root: Path) -> subprocess.CompletedProcess[str]:
    """The image's HEALTHCHECK command, its fixed container port pointed at the local one."""
    model = load_dockerfile()
    check = model.healthcheck(service)
    assert check is not None and check[0] == "python"
    script, address = check[1], check[2]
    port = int(re.search(r":(\d+)", address.split("//", 1)[1]).group(1))  # type: ignore[union-attr]
    address = address.replace(f":{port}", f":{pod.ports[port]}", 1)
    return subprocess.run(
        [sys.executable, str(root / script.lstrip("/")), address],
        env=image_env(model, service, root),
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_migration_job_and_accounting_wait_for_it(
    new_database: Callable[[], str], redis_url: str, private_nats_url: str, image_roots: dict[str, Path]
) -> None:
    docs = render("base")
    own = {"REDIS_URL": redis_url, "NATS_URL": private_nats_url, "DATABASE_URL": new_database()}
    model = load_dockerfile()
    init = pod_spec(find(docs, "Deployment", "accounting"))["initContainers"][0]
    # The init container loops on this check; run the check itself, before and after the Job.
    check = re.search(r"until (.+?);", init["command"][-1])
    assert check is not None, init["command"]
    root = image_roots["migrate"]
    env = {**manifest_env(docs, init, own), **image_env(model, "migrate", root)}
    cwd = root / model.workdir("migrate").lstrip("/")
    before = run_to_completion(check.group(1).split(), cwd, env)
    assert before.returncode != 0, "on an empty database the init container must keep waiting"
    job = pod_spec(find(docs, "Job", "migrate"))["containers"][0]
    first = _run_job(job, own, image_roots)
    assert first.returncode == 0, first.stderr
    after = run_to_completion(check.group(1).split(), cwd, env)
    assert after.returncode == 0, after.stderr
    # A Job may run again (a retry, the next release): on a database at head it changes nothing.
    again = _run_job(job, own, image_roots)
    assert again.returncode == 0, again.stderr


@pytest.mark.parametrize("service", SERVICES)
def test_service_starts_and_stops_with_only_its_manifest_environment(
    service: str,
    secrets: dict[str, str],
    migrated: None,
    image_roots: dict[str, Path],
    tmp_path: Path,
) -> None:
    with ExitStack() as stack:
        peers: dict[str, str] = {}
        if service == "gateway":
            # The gateway calls the router it is configured for: start that one from its manifest too.
            router, router_pod = stack.enter_context(run_service("router", secrets, image_roots, tmp_path, {}))
            grpc_port = next(p["containerPort"] for p in router_pod.container["ports"] if p["name"] == "grpc")
            peers = {f"router:{grpc_port}": f"127.0.0.1:{router_pod.port(grpc_port)}"}
        running, pod = stack.enter_context(run_service(service, secrets, image_roots, tmp_path, peers))
        assert pod.alive(), f"{service} is ready but its livenessProbe fails:\n{running.output()}"
        # The scraper's port, as the pod's annotations name it: Prometheus text, without a key.
        annotations = find(render("base"), "Deployment", service)["spec"]["template"]["metadata"]["annotations"]
        scraped = (
            f"http://127.0.0.1:{pod.port(int(annotations['prometheus.io/port']))}{annotations['prometheus.io/path']}"
        )
        with urllib.request.urlopen(scraped, timeout=5) as response:
            families = {f.name for f in text_string_to_metric_families(response.read().decode())}
        assert any(name.startswith(f"modelrouter_{METRIC_PREFIX[service]}_") for name in families), families
        health = _image_healthcheck(service, pod, image_roots[service])
        assert health.returncode == 0, f"the image's HEALTHCHECK fails: {health.stdout}{health.stderr}"
        status = running.terminate()
        assert status == 0, f"{service} exited {status} on SIGTERM:\n{running.output()}"
        if service == "gateway":
            assert router.terminate() == 0, router.output()
