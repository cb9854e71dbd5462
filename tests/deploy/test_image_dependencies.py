"""Each image installs the shared dependencies plus its own extra only (`pip install '.[<service>]'`);
this checks that that is enough and not more than the service uses: importing the service's program
from its image's files loads no third-party distribution outside that extra's dependency closure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sysconfig
import tomllib
from functools import cache
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.dockerfile_model import REPO, SERVICES
from tests.deploy.dockerfile_model import load as load_dockerfile
from tests.deploy.image_process import image_env, run_to_completion

pytestmark = pytest.mark.deploy

# Runs in the image's layout: makes every distribution outside the image's set importable as if
# absent (so optional imports take their fallback, as they will in the image), imports the service's
# program, and prints the files that import loaded.
_PROBE = ["python", "-m", "tests_deploy_probe"]
_PROBE_SOURCE = """
import importlib, importlib.abc, importlib.machinery, json, os, re, sys
from importlib import metadata

service, allowed = sys.argv[1], set(json.loads(sys.argv[2]))
owners = {}
for dist in metadata.distributions():
    name = re.sub(r"[-_.]+", "-", dist.metadata["Name"]).lower()
    for file in dist.files or []:
        owners[os.path.normpath(str(dist.locate_file(file)))] = name


class NotInImage(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        origin = spec.origin if spec is not None else None
        owner = owners.get(os.path.normpath(origin)) if origin else None
        if owner is not None and owner not in allowed:
            raise ModuleNotFoundError(f"No module named {fullname!r} ({owner} is not in this image)", name=fullname)
        return None


def files():
    return {getattr(m, "__file__", None) or "" for m in list(sys.modules.values())} - {""}


at_start = files()  # the interpreter's own start-up (site, .pth hooks), not the service's
sys.meta_path.insert(0, NotInImage())
importlib.import_module(service + ".main")
print(json.dumps(sorted(files() - at_start)))
"""
# What `python -m venv` (pip, setuptools on 3.11) and `pip install .` (the project) put in every venv.
VENV_BASE = frozenset({"pip", "setuptools", "modelrouter"})


def _requirements(extra: str) -> list[Requirement]:
    """The image's direct requirements, from pyproject.toml (what the Dockerfile installs)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in [*project["dependencies"], *project["optional-dependencies"][extra]]]


@cache
def _closure(extra: str) -> frozenset[str]:
    """Canonical names of every distribution `pip install '.[extra]'` installs."""
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [(req.name, frozenset(req.extras)) for req in _requirements(extra)]
    names: set[str] = set()
    while todo:
        name, extras = todo.pop()
        key = (canonicalize_name(name), extras)
        if key in seen:
            continue
        seen.add(key)
        names.add(key[0])
        for text in metadata.requires(name) or []:
            req = Requirement(text)
            if req.marker is not None and not any(req.marker.evaluate({"extra": e}) for e in (*extras, "")):
                continue
            todo.append((req.name, frozenset(req.extras)))
    return frozenset(names)


@cache
def _file_owners() -> dict[str, str]:
    owners = {}
    for dist in metadata.distributions():
        name = canonicalize_name(dist.metadata["Name"])
        for file in dist.files or []:
            owners[os.path.normpath(str(dist.locate_file(file)))] = name
    return owners


def _probe(service: str, allowed: set[str], root: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    model = load_dockerfile()
    probe_dir = tmp_path / "probe"
    probe_dir.mkdir(exist_ok=True)
    (probe_dir / "tests_deploy_probe.py").write_text(_PROBE_SOURCE)
    env = image_env(model, service, root)
    env["PYTHONPATH"] += f":{probe_dir}"
    cwd = root / model.workdir(service).lstrip("/")
    return run_to_completion([*_PROBE, service, json.dumps(sorted(allowed | VENV_BASE))], cwd, env)


def test_probe_fails_when_a_needed_distribution_is_not_in_the_image(
    image_roots: dict[str, Path], tmp_path: Path
) -> None:
    """The workers call providers with httpx; with the router's set (no httpx) their import fails."""
    result = _probe("workers", set(_closure("router")), image_roots["workers"], tmp_path)
    assert result.returncode != 0 and "httpx" in result.stderr


@pytest.mark.parametrize("service", SERVICES)
def test_service_imports_only_what_its_extra_installs(
    service: str, image_roots: dict[str, Path], tmp_path: Path
) -> None:
    result = _probe(service, set(_closure(service)), image_roots[service], tmp_path)
    assert result.returncode == 0, f"{service}.main does not import from its image's files:\n{result.stderr}"
    site_dirs = {os.path.normpath(sysconfig.get_paths()[k]) for k in ("purelib", "platlib")}
    loaded = [os.path.normpath(f) for f in json.loads(result.stdout.strip().splitlines()[-1])]
    third_party = [f for f in loaded if any(f.startswith(d + "/") for d in site_dirs)]
    assert third_party, "nothing from site-packages was imported: the probe did not run the service's imports"
    owners = _file_owners()
    outside = sorted({owners.get(f, f) for f in third_party} - _closure(service) - VENV_BASE)
    assert not outside, f"{service} imports distributions its image does not install: {outside}"
    # And nothing was imported from the developer's source tree.
    assert not [f for f in loaded if f.startswith(str(REPO) + "/") and not f.startswith(str(REPO / ".venv"))]
