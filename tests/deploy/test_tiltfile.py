"""The Tiltfile, evaluated here with recording stand-ins for Tilt's built-ins (Starlark as written
here is Python syntax): its references exist (Dockerfile targets, overlay, synced folders), its live
updates land where the image keeps the code, and it builds exactly the images the dev overlay runs.

The stand-ins take Tilt's documented parameter names only, so a misspelt argument fails here too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.dockerfile_model import REPO, SERVICES
from tests.deploy.dockerfile_model import load as load_dockerfile
from tests.deploy.tools import K8S_DIR, of_kind, pod_spec, render

pytestmark = pytest.mark.deploy

TILTFILE = REPO / "Tiltfile"
# docker_build's parameters (docs.tilt.dev/api.html#api.docker_build).
DOCKER_BUILD_PARAMS = {
    "build_args", "dockerfile", "dockerfile_contents", "live_update", "match_in_env_vars", "ignore", "only",
    "entrypoint", "target", "ssh", "network", "secret", "extra_tag", "container_args", "cache_from", "pull",
    "platform", "extra_hosts",
}  # fmt: skip
K8S_RESOURCE_PARAMS = {
    "workload", "new_name", "port_forwards", "extra_pod_selectors", "trigger_mode", "resource_deps", "objects",
    "auto_init", "pod_readiness", "links", "labels", "discovery_strategy",
}  # fmt: skip


@dataclass(frozen=True)
class Sync:
    local: str
    remote: str


@dataclass(frozen=True)
class FallBackOn:
    paths: tuple[str, ...]


@dataclass(frozen=True)
class Run:
    command: str


@dataclass
class Build:
    ref: str
    context: str
    kwargs: dict[str, Any]
    entrypoint: list[str] | None = None
    restart_file: str | None = None


@dataclass
class Tilt:
    """What evaluating the Tiltfile declared."""

    builds: dict[str, Build] = field(default_factory=dict)
    yaml_sources: list[str] = field(default_factory=list)
    resources: dict[str, dict[str, Any]] = field(default_factory=dict)
    loads: list[tuple[str, ...]] = field(default_factory=list)
    watched: list[str] = field(default_factory=list)
    local_commands: list[str] = field(default_factory=list)


def _evaluate(env_file_exists: bool) -> Tilt:
    tilt = Tilt()

    def docker_build(ref: str, context: str, **kwargs: Any) -> None:
        unknown = set(kwargs) - DOCKER_BUILD_PARAMS
        assert not unknown, f"docker_build({ref!r}) got unknown parameters {unknown}"
        assert ref not in tilt.builds, f"{ref} built twice"
        tilt.builds[ref] = Build(ref, context, kwargs)

    def docker_build_with_restart(
        ref: str,
        context: str,
        entrypoint: list[str] | str,
        live_update: list[Any],
        base_suffix: str = "-base",
        restart_file: str = "/tmp/.restart-proc",
        **kwargs: Any,
    ) -> None:
        assert isinstance(entrypoint, list), "a list entrypoint runs without a shell in between"
        docker_build(ref, context, live_update=live_update, **kwargs)
        tilt.builds[ref].entrypoint = entrypoint
        tilt.builds[ref].restart_file = restart_file

    def load(module: str, *symbols: str) -> None:
        tilt.loads.append((module, *symbols))
        extensions = {"ext://restart_process": {"docker_build_with_restart": docker_build_with_restart}}
        assert module in extensions, f"unexpected extension {module}"
        for symbol in symbols:
            namespace[symbol] = extensions[module][symbol]

    def kustomize(path: str) -> str:
        return f"kustomize:{path}"

    def k8s_yaml(source: str) -> None:
        tilt.yaml_sources.append(source)

    def k8s_resource(workload: str = "", **kwargs: Any) -> None:
        unknown = set(kwargs) - K8S_RESOURCE_PARAMS
        assert not unknown, f"k8s_resource({workload!r}) got unknown parameters {unknown}"
        assert workload not in tilt.resources, f"k8s_resource({workload!r}) twice"
        tilt.resources[workload] = kwargs

    def local(command: str, quiet: bool = False, echo_off: bool = False) -> str:
        tilt.local_commands.append(command)
        return "local-output"

    def link(url: str, name: str = "") -> tuple[str, str]:
        return (url, name)

    class _Path:
        @staticmethod
        def exists(path: str) -> bool:
            return env_file_exists if path == ".env" else (REPO / path).exists()

    class _Os:
        path = _Path
        getcwd = staticmethod(lambda: str(REPO))

    namespace: dict[str, Any] = {
        "load": load,
        "docker_build": docker_build,
        "sync": lambda local, remote: Sync(local, remote),
        "fall_back_on": lambda paths: FallBackOn(tuple([paths] if isinstance(paths, str) else paths)),
        "run": lambda command, trigger=(): Run(command),
        "kustomize": kustomize,
        "k8s_yaml": k8s_yaml,
        "k8s_resource": k8s_resource,
        "local": local,
        "link": link,
        "watch_file": tilt.watched.append,
        "os": _Os,
    }
    exec(compile(TILTFILE.read_text(), str(TILTFILE), "exec"), namespace)
    return tilt


@pytest.fixture(scope="module")
def tilt() -> Tilt:
    return _evaluate(env_file_exists=False)


def _live_update(build: Build) -> list[Any]:
    steps: list[Any] = build.kwargs.get("live_update", [])
    return steps


def test_builds_name_existing_dockerfile_targets(tilt: Tilt) -> None:
    for build in tilt.builds.values():
        context = REPO / build.context
        dockerfile = context / build.kwargs.get("dockerfile", "Dockerfile")
        assert dockerfile.is_file(), f"{build.ref}: no {dockerfile}"
        target = build.kwargs["target"]
        assert target in load_dockerfile(dockerfile).stages, f"{build.ref}: no target {target}"
        assert build.ref == f"modelrouter/{target}"
        for path in build.kwargs.get("only", []):
            assert (context / path).exists(), f"{build.ref}: only={path} does not exist"


def test_builds_exactly_the_images_the_dev_overlay_runs(tilt: Tilt) -> None:
    assert tilt.yaml_sources[0] == "kustomize:deploy/k8s/overlays/dev"
    overlay = REPO / tilt.yaml_sources[0].removeprefix("kustomize:")
    assert overlay == K8S_DIR / "overlays" / "dev" and (overlay / "kustomization.yaml").is_file()
    docs = render("dev")
    ours = {
        c["image"]
        for w in of_kind(docs, "Deployment", "StatefulSet", "Job")
        for c in pod_spec(w).get("initContainers", []) + pod_spec(w)["containers"]
        if c["image"].startswith("modelrouter/")
    }
    assert ours == set(tilt.builds), (
        f"deployed but not built: {ours - set(tilt.builds)}; unused: {set(tilt.builds) - ours}"
    )


def test_each_service_is_live_updated_and_restarted(tilt: Tilt) -> None:
    model = load_dockerfile()
    for service in SERVICES:
        build = tilt.builds[f"modelrouter/{service}"]
        assert build.entrypoint == model.cmd(service), f"{service}: the restarted command is not the image's CMD"
        steps = _live_update(build)
        fall_backs = [s for s in steps if isinstance(s, FallBackOn)]
        syncs = [s for s in steps if isinstance(s, Sync)]
        # Steps in Tilt's order: fall_back_on first, then syncs.
        assert steps[: len(fall_backs)] == fall_backs
        copies = {
            os.path.normpath(source): os.path.normpath(c.dest)
            for c in model.copies(service)
            if c.from_stage is None
            for source in c.sources
        }
        synced = {os.path.normpath(s.local): os.path.normpath(s.remote) for s in syncs}
        assert {"libs/common", f"services/{service}"} <= set(synced), f"{service} syncs {sorted(synced)}"
        for local, remote in synced.items():
            assert (REPO / local).is_dir(), f"{service}: sync source {local} does not exist"
            assert copies.get(local) == remote, (
                f"{service}: sync {local} -> {remote}, image has it at {copies.get(local)}"
            )
        # Every copied source tree is either synced or triggers a rebuild: none goes stale.
        rebuilt = {os.path.normpath(p) for f in fall_backs for p in f.paths}
        stale = {src for src in copies if src not in synced and src not in rebuilt and not src.startswith("deploy/")}
        assert not stale, f"{service}: changes to {stale} would be neither synced nor rebuilt"


def test_dependency_and_proto_changes_rebuild_the_image(tilt: Tilt) -> None:
    model = load_dockerfile()
    for service in SERVICES:
        build = tilt.builds[f"modelrouter/{service}"]
        rebuilt = {p for s in _live_update(build) if isinstance(s, FallBackOn) for p in s.paths}
        assert {"pyproject.toml", "proto"} <= rebuilt, f"{service}: {rebuilt}"
        for path in rebuilt:
            assert (REPO / path).exists(), path
            # ...and they are inputs of the image (the deps and protos stages copy them).
            copied = {os.path.normpath(s) for c in model.copies(service) for s in c.sources}
            stages = {c.from_stage for c in model.copies(service) if c.from_stage}
            copied |= {
                os.path.normpath(s)
                for stage in stages
                for c in model.copies(stage)
                if c.from_stage is None
                for s in c.sources
            }
            assert path in copied, f"{service}: {path} is not an input of the image"


def test_dev_builds_let_the_app_user_write_synced_files(tilt: Tilt) -> None:
    """Live update writes as the container's user: dev builds hand the code to that user, and the
    restart trigger file lives in a folder it owns (its home)."""
    model = load_dockerfile()
    useradd = next(c for c in model.commands("runtime", "RUN") if "useradd" in c.value[0]).value[0].split()
    home = useradd[useradd.index("--home-dir") + 1]
    for service in SERVICES:
        build = tilt.builds[f"modelrouter/{service}"]
        owner = build.kwargs["build_args"]["APP_FILES_OWNER"]
        assert owner == model.user(service), f"{service}: code owned by {owner}, runs as {model.user(service)}"
        assert "APP_FILES_OWNER" in model.args(service)
        assert all(c.chown == "${APP_FILES_OWNER}" for c in model.copies(service) if c.dest.startswith("/app/"))
        assert build.restart_file is not None and Path(build.restart_file).parent == Path(home)


def test_resources_are_grouped_wired_and_forwarded(tilt: Tilt) -> None:
    docs = render("dev")
    workloads = {w["metadata"]["name"]: w for w in of_kind(docs, "Deployment", "StatefulSet", "Job")}
    assert set(tilt.resources) == set(workloads), "every workload gets a k8s_resource"
    for name, resource in tilt.resources.items():
        assert resource.get("labels"), f"{name} has no label"
        for dep in resource.get("resource_deps", []):
            assert dep in tilt.resources, f"{name} depends on unknown {dep}"
        for selector in resource.get("objects", []):
            obj_name, kind = selector.split(":")[:2]
            assert any(d["metadata"]["name"] == obj_name and d["kind"].lower() == kind for d in docs), (
                f"{name}: no object {selector}"
            )
        for forward in resource.get("port_forwards", []):
            container_port = int(str(forward).split(":")[-1])
            ports = {p["containerPort"] for c in pod_spec(workloads[name])["containers"] for p in c.get("ports", [])}
            assert container_port in ports, f"{name}: forwards {forward}, container ports {ports}"
    forwards = {name: r.get("port_forwards", []) for name, r in tilt.resources.items()}
    assert "8000:8000" in forwards["gateway"]
    assert "16686:16686" in forwards["jaeger"]
    assert "migrate" in tilt.resources["accounting"]["resource_deps"]


def test_provider_keys_come_from_dotenv_only_when_it_exists() -> None:
    without = _evaluate(env_file_exists=False)
    assert not without.local_commands
    with_env = _evaluate(env_file_exists=True)
    assert ".env" in with_env.watched
    (command,) = with_env.local_commands
    assert "--from-env-file=.env" in command and "--dry-run=client" in command
    # The Secret it creates is the one the base mounts (optionally) into the services.
    name = command.split("secret generic ", 1)[1].split()[0]
    docs = render("base")
    refs = {
        s["secretRef"]["name"]
        for w in of_kind(docs, "Deployment")
        for c in pod_spec(w)["containers"]
        for s in c.get("envFrom", [])
        if "secretRef" in s
    }
    assert refs == {name}
    assert "local-output" in with_env.yaml_sources
