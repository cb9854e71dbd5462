"""deploy/k8s: every kustomization renders with `kubectl kustomize`, every object validates against
the Kubernetes API schemas (kubernetes-validate, strict: unknown fields fail), and the rendered
objects hold what the deployment promises: a restricted securityContext, probes, resources,
autoscaling and disruption budgets, references that resolve, and the dev/prod differences."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from common.config import parse_config
from tests.deploy import env_names
from tests.deploy.dockerfile_model import SERVICES
from tests.deploy.dockerfile_model import load as load_dockerfile
from tests.deploy.tools import K8S_DIR, find, generated, of_kind, pod_spec, render

pytestmark = pytest.mark.deploy

KUSTOMIZATIONS = ("base", "dev", "prod")
# The oldest Kubernetes the manifests are written for (gRPC probes are GA from 1.27), and the newest
# schemas kubernetes-validate ships.
K8S_VERSIONS = ("1.29.0", kubernetes_validate.utils.latest_version())
SCALED = ("gateway", "router", "workers")
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job")
# Secrets the base only references; prod expects them to exist, dev generates or tolerates them.
EXTERNAL_SECRETS = {"modelrouter-backends", "modelrouter-api-keys", "modelrouter-provider-keys"}
OUR_IMAGE_PREFIX = "modelrouter/"


def _containers(workload: dict[str, Any], init: bool = True) -> list[dict[str, Any]]:
    spec = pod_spec(workload)
    return list(spec.get("initContainers", []) if init else []) + list(spec["containers"])


def _ours(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The modelrouter workloads (not the dev overlay's Postgres/Redis/NATS/Jaeger)."""
    return [
        d
        for d in of_kind(docs, *WORKLOAD_KINDS)
        if d["metadata"].get("labels", {}).get("app.kubernetes.io/part-of") == "modelrouter"
    ]


def _env_of(docs: list[dict[str, Any]], container: dict[str, Any]) -> dict[str, str]:
    """Literal environment a container gets from its ConfigMaps (envFrom) and `value:` entries."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(find(docs, "ConfigMap", source["configMapRef"]["name"])["data"])
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
    return env


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_object_validates_against_the_kubernetes_schemas(kustomization: str, version: str) -> None:
    docs = render(kustomization)
    assert docs, f"{kustomization} rendered nothing"
    errors = []
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message} at {list(exc.absolute_path)}")
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_each_service_has_a_deployment_with_its_own_image(kustomization: str) -> None:
    docs = render(kustomization)
    targets = set(load_dockerfile().stages)
    for service in SERVICES:
        deployment = find(docs, "Deployment", service)
        image = pod_spec(deployment)["containers"][0]["image"]
        # The image's last path segment is the Dockerfile target it is built from.
        target = image.rsplit("/", 1)[-1].split(":")[0]
        assert target == service, f"{service} runs {image}"
        assert target in targets
    job = find(docs, "Job", "migrate")
    assert pod_spec(job)["containers"][0]["image"].rsplit("/", 1)[-1].split(":")[0] == "migrate"


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_containers_run_restricted(kustomization: str) -> None:
    """Pod Security "restricted": non-root, no privilege escalation, all capabilities dropped,
    RuntimeDefault seccomp; plus a read-only root filesystem outside dev (Tilt syncs files there)."""
    docs = render(kustomization)
    workloads = _ours(docs)
    assert {w["metadata"]["name"] for w in workloads} == {*SERVICES, "migrate"}
    for workload in workloads:
        spec = pod_spec(workload)
        name = workload["metadata"]["name"]
        pod_sc = spec.get("securityContext", {})
        assert pod_sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", name
        assert spec.get("automountServiceAccountToken") is False, name
        find(docs, "ServiceAccount", spec["serviceAccountName"])
        for container in _containers(workload):
            sc = container.get("securityContext", {})
            where = f"{name}/{container['name']}"
            assert sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, where
            assert sc.get("runAsUser", pod_sc.get("runAsUser", 0)) != 0, where
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
            assert not sc.get("capabilities", {}).get("add"), where
            assert sc.get("privileged", False) is False, where
            read_only = sc.get("readOnlyRootFilesystem")
            if kustomization == "dev" and container["name"] in SERVICES:
                assert read_only is False, f"{where}: Tilt's live update needs a writable filesystem"
            else:
                assert read_only is True, where


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_image_user_matches_the_pod_user(kustomization: str) -> None:
    """runAsNonRoot needs a numeric USER in the image; the pod's runAsUser must be that user."""
    model = load_dockerfile()
    docs = render(kustomization)
    for workload in _ours(docs):
        target = pod_spec(workload)["containers"][0]["image"].rsplit("/", 1)[-1].split(":")[0]
        user = model.user(target)
        assert user is not None and user.isdigit() and user != "0", f"{target}: USER {user}"
        assert str(pod_spec(workload)["securityContext"]["runAsUser"]) == user


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_every_container_has_requests_and_limits(kustomization: str) -> None:
    docs = render(kustomization)
    for workload in of_kind(docs, *WORKLOAD_KINDS):
        for container in _containers(workload):
            resources = container.get("resources", {})
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(kind, {})), (
                    f"{workload['metadata']['name']}/{container['name']} lacks {kind}"
                )


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_probes_hit_the_services_own_endpoints(kustomization: str) -> None:
    docs = render(kustomization)
    for service in SERVICES:
        container = pod_spec(find(docs, "Deployment", service))["containers"][0]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        for probe_name in ("readinessProbe", "livenessProbe", "startupProbe"):
            probe = container.get(probe_name)
            assert probe, f"{service} has no {probe_name}"
            if service == "router":
                assert probe["grpc"]["port"] == ports["grpc"], f"router {probe_name} must use gRPC health"
                continue
            http = probe["httpGet"]
            assert http["port"] in ports, f"{service} {probe_name} port {http['port']} is not a container port"
            expected = "/ready" if probe_name == "readinessProbe" else "/health"
            assert http["path"] == expected, f"{service} {probe_name}"


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_configured_ports_match_container_ports_and_services(kustomization: str) -> None:
    docs = render(kustomization)

    def container(service: str) -> dict[str, Any]:
        return pod_spec(find(docs, "Deployment", service))["containers"][0]

    def port(service: str, name: str) -> int:
        return next(int(p["containerPort"]) for p in container(service)["ports"] if p["name"] == name)

    gateway_env = _env_of(docs, container("gateway"))
    assert int(gateway_env["GATEWAY_PORT"]) == port("gateway", "http")
    assert gateway_env["GATEWAY_HOST"] == "0.0.0.0"
    router_env = _env_of(docs, container("router"))
    host, _, listen_port = router_env["ROUTER_LISTEN"].rpartition(":")
    assert host == "0.0.0.0" and int(listen_port) == port("router", "grpc")
    for service in ("workers", "accounting"):
        env = _env_of(docs, container(service))
        assert env["HEALTH_HOST"] == "0.0.0.0" and int(env["HEALTH_PORT"]) == port(service, "health")
    # The gateway reaches the router through the router's Service.
    router_host, _, router_port = gateway_env["ROUTER_ADDR"].rpartition(":")
    service = find(docs, "Service", router_host)
    assert int(router_port) in {p["port"] for p in service["spec"]["ports"]}
    for svc in of_kind(docs, "Service"):
        selected = [
            w
            for w in of_kind(docs, *WORKLOAD_KINDS)
            if svc["spec"]["selector"].items() <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert selected, f"Service {svc['metadata']['name']} selects no pod"
        names = {p.get("name") for c in _containers(selected[0], init=False) for p in c.get("ports", [])}
        for p in svc["spec"]["ports"]:
            assert p["targetPort"] in names, f"Service {svc['metadata']['name']}: targetPort {p['targetPort']}"


# The setting that makes each service serve /metrics, and the host it listens on.
METRICS_SETTINGS = {
    "gateway": ("METRICS_HOST", "METRICS_PORT"),
    "router": ("HEALTH_HOST", "HEALTH_PORT"),
    "workers": ("HEALTH_HOST", "HEALTH_PORT"),
    "accounting": ("HEALTH_HOST", "HEALTH_PORT"),
}


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_every_service_is_scraped_where_it_serves_metrics_and_no_service_exposes_that_port(
    kustomization: str,
) -> None:
    docs = render(kustomization)
    for service in SERVICES:
        deployment = find(docs, "Deployment", service)
        annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
        assert annotations.get("prometheus.io/scrape") == "true", service
        assert annotations.get("prometheus.io/path") == "/metrics", service
        container = pod_spec(deployment)["containers"][0]
        host, port = (_env_of(docs, container)[name] for name in METRICS_SETTINGS[service])
        assert host == "0.0.0.0", service
        assert annotations["prometheus.io/port"] == port, service
        named = {int(p["containerPort"]): p["name"] for p in container["ports"]}
        assert int(port) in named, f"{service}: metrics port {port} is not a container port"
        # Metrics go without a key: only the scraper inside the cluster may reach them.
        for svc in of_kind(docs, "Service"):
            if svc["spec"]["selector"].get("app.kubernetes.io/name") == service:
                targets = {p["targetPort"] for p in svc["spec"]["ports"]}
                assert named[int(port)] not in targets and int(port) not in targets, service


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_settings_names_are_ones_the_services_read(kustomization: str) -> None:
    docs = render(kustomization)
    for service in SERVICES:
        container = pod_spec(find(docs, "Deployment", service))["containers"][0]
        names = set(_env_of(docs, container)) | {e["name"] for e in container.get("env", [])}
        unknown = sorted(n for n in names if not env_names.is_known(service, n))
        assert not unknown, f"{service} is given variables it never reads: {unknown}"


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_drain_fits_in_the_termination_grace_period(kustomization: str) -> None:
    docs = render(kustomization)
    for service in SERVICES:
        deployment = find(docs, "Deployment", service)
        container = pod_spec(deployment)["containers"][0]
        drain = float(_env_of(docs, container)["DRAIN_TIMEOUT_S"])
        pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
        pre_stop_s = float(pre_stop[1]) if pre_stop[:1] == ["sleep"] else 0.0
        grace = pod_spec(deployment)["terminationGracePeriodSeconds"]
        assert grace > drain + pre_stop_s, f"{service}: {grace}s grace < {pre_stop_s}s preStop + {drain}s drain"


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_stateless_services_have_autoscalers_and_disruption_budgets(kustomization: str) -> None:
    docs = render(kustomization)
    for service in SCALED:
        deployment = find(docs, "Deployment", service)
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        hpa = find(docs, "HorizontalPodAutoscaler", service)
        ref = hpa["spec"]["scaleTargetRef"]
        assert (ref["kind"], ref["name"]) == ("Deployment", service)
        assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
        # The autoscaler owns the count: a fixed `replicas` would reset it on every apply.
        assert "replicas" not in deployment["spec"], f"{service} sets replicas under an HPA"
        pdb = find(docs, "PodDisruptionBudget", service)
        assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
        # CPU utilisation targets are relative to requests; without them the HPA cannot act.
        assert pod_spec(deployment)["containers"][0]["resources"]["requests"]["cpu"]


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_accounting_waits_for_the_migration(kustomization: str) -> None:
    docs = render(kustomization)
    job = find(docs, "Job", "migrate")
    job_image = pod_spec(job)["containers"][0]["image"]
    init = pod_spec(find(docs, "Deployment", "accounting"))["initContainers"]
    assert [c["name"] for c in init] == ["wait-for-schema"]
    assert init[0]["image"] == job_image
    assert "alembic current --check-heads" in " ".join(init[0]["command"])


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_references_resolve(kustomization: str) -> None:
    """ConfigMaps resolve everywhere; Secrets resolve in dev, and in base/prod are the documented
    external ones; every key a container takes from a dev Secret exists in it."""
    docs = render(kustomization)
    for workload in of_kind(docs, *WORKLOAD_KINDS):
        spec = pod_spec(workload)
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                find(docs, "ConfigMap", volume["configMap"]["name"])
        for container in _containers(workload):
            refs: list[tuple[str, str | None, bool]] = []
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    find(docs, "ConfigMap", source["configMapRef"]["name"])
                if "secretRef" in source:
                    refs.append((source["secretRef"]["name"], None, source["secretRef"].get("optional", False)))
            for item in container.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    refs.append((ref["name"], ref["key"], ref.get("optional", False)))
            for name, key, optional in refs:
                secrets = [s for s in of_kind(docs, "Secret") if s["metadata"]["name"] == name]
                if not secrets:
                    assert kustomization != "dev" or optional, f"dev lacks Secret {name}"
                    assert name in EXTERNAL_SECRETS or kustomization == "dev", f"undocumented Secret {name}"
                    continue
                if key is not None:
                    assert key in secrets[0].get("data", {}), f"Secret {name} has no key {key}"


def test_dev_runs_the_backends_in_the_cluster() -> None:
    docs = render("dev")
    backends = generated(docs, "Secret", "modelrouter-backends")
    import base64

    urls = {k: base64.b64decode(v).decode() for k, v in backends["data"].items()}
    assert set(urls) == {"DATABASE_URL", "REDIS_URL", "NATS_URL"}
    for url in urls.values():
        parts = urlsplit(url)
        service = find(docs, "Service", str(parts.hostname))
        assert parts.port in {p["port"] for p in service["spec"]["ports"]}, url
    nats = find(docs, "StatefulSet", "nats")
    args = pod_spec(nats)["containers"][0]["args"]
    assert "--jetstream" in args
    store = args[args.index("--store_dir") + 1]
    mounts = {m["mountPath"]: m["name"] for m in pod_spec(nats)["containers"][0]["volumeMounts"]}
    claims = {c["metadata"]["name"] for c in nats["spec"]["volumeClaimTemplates"]}
    assert mounts.get(store) in claims, "JetStream's store must be on a persistent volume"
    find(docs, "StatefulSet", "postgres")
    find(docs, "Deployment", "redis")
    jaeger = find(docs, "Service", "jaeger")
    common = generated(docs, "ConfigMap", "modelrouter-common")["data"]
    endpoint = urlsplit(common["OTEL_EXPORTER_OTLP_ENDPOINT"])
    assert endpoint.hostname == "jaeger" and endpoint.port in {p["port"] for p in jaeger["spec"]["ports"]}
    assert 16686 in {p["port"] for p in jaeger["spec"]["ports"]}
    # The OTLP receiver must listen beyond the pod's loopback for the services to reach it.
    jaeger_args = pod_spec(find(docs, "Deployment", "jaeger"))["containers"][0]["args"]
    assert f"--set=receivers.otlp.protocols.grpc.endpoint=0.0.0.0:{endpoint.port}" in jaeger_args


def test_prod_uses_managed_backends_and_an_external_collector() -> None:
    docs = render("prod")
    names = {d["metadata"]["name"] for d in of_kind(docs, *WORKLOAD_KINDS)}
    assert not names & {"postgres", "redis", "nats", "jaeger"}, "prod must not run its own backends"
    assert not of_kind(docs, "Secret"), "prod's secrets are created out of band, never committed"
    common = generated(docs, "ConfigMap", "modelrouter-common")["data"]
    endpoint = urlsplit(common["OTEL_EXPORTER_OTLP_ENDPOINT"])
    assert endpoint.hostname and endpoint.hostname != "jaeger"
    namespace = find(docs, "Namespace", "modelrouter")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert all(d["metadata"].get("namespace") == "modelrouter" for d in docs if d["kind"] != "Namespace")
    for workload in _ours(docs):
        for container in _containers(workload):
            assert not container["image"].startswith(OUR_IMAGE_PREFIX), "prod images come from a registry"
            assert ":" in container["image"].rsplit("/", 1)[-1], f"{container['image']} has no tag"
    gateway = pod_spec(find(docs, "Deployment", "gateway"))["containers"][0]
    api_keys = next(e for e in gateway["env"] if e["name"] == "API_KEYS")
    assert api_keys["valueFrom"]["secretKeyRef"]["optional"] is False


def test_prod_has_more_replicas_than_dev() -> None:
    dev, prod = render("dev"), render("prod")
    for service in SCALED:
        dev_hpa, prod_hpa = (
            find(dev, "HorizontalPodAutoscaler", service),
            find(prod, "HorizontalPodAutoscaler", service),
        )
        assert prod_hpa["spec"]["minReplicas"] >= 2
        assert prod_hpa["spec"]["minReplicas"] > dev_hpa["spec"]["minReplicas"]
        assert prod_hpa["spec"]["maxReplicas"] > dev_hpa["spec"]["maxReplicas"]
    assert (
        find(prod, "Deployment", "accounting")["spec"]["replicas"]
        > find(dev, "Deployment", "accounting")["spec"]["replicas"]
    )


def test_prod_routing_config_is_mounted_where_it_is_read_and_parses(monkeypatch: pytest.MonkeyPatch) -> None:
    docs = render("prod")
    for service in env_names.READS_CONFIG:
        deployment = find(docs, "Deployment", service)
        container = pod_spec(deployment)["containers"][0]
        path = _env_of(docs, container)["MODELROUTER_CONFIG"]
        folder, _, filename = path.rpartition("/")
        mount = next(m for m in container["volumeMounts"] if m["mountPath"] == folder)
        volume = next(v for v in pod_spec(deployment)["volumes"] if v["name"] == mount["name"])
        text = find(docs, "ConfigMap", volume["configMap"]["name"])["data"][filename]
        raw = yaml.safe_load(text)
        # Production serves real providers only, and takes client keys from API_KEYS alone.
        assert "fake" not in {p["adapter"] for p in raw["providers"].values()}
        assert not raw.get("keys")
        for provider in raw["providers"].values():  # switch every provider on to check all of it
            if provider.get("enabled_if_env"):
                monkeypatch.setenv(provider["enabled_if_env"], "set-for-the-test")
        config = parse_config(text, f"prod {filename}")
        assert len(config.deployments) == len(raw["deployments"]) > 0
    # The committed file is what the ConfigMap carries.
    text = (K8S_DIR / "overlays" / "prod" / "modelrouter.yaml").read_text()
    assert yaml.safe_load(text) == yaml.safe_load(
        generated(docs, "ConfigMap", "modelrouter-routing")["data"]["modelrouter.yaml"]
    )
