"""What an image's filesystem holds, without a Docker engine: the build context filtered by
.dockerignore, then each COPY of a target's stage chain applied into a folder, and the protos stage's
own RUN lines executed to produce the generated code it hands over. Dependency stages (/opt/venv)
are not built: the project's venv stands in for them (test_image_dependencies checks the sets).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from tests.deploy.dockerfile_model import REPO, DockerfileModel

DOCKERIGNORE = REPO / ".dockerignore"
# Stages whose output is a virtualenv; the test's interpreter provides those packages.
VENV_PATH = "/opt/venv"


@dataclass(frozen=True)
class _Pattern:
    regex: re.Pattern[str]
    exclusion: bool  # a "!" line: re-include what it matches
    text: str


def _translate(pattern: str) -> re.Pattern[str]:
    """Go filepath.Match syntax plus `**` (any number of path segments), as Docker reads it."""
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                i += 1
                out.append("(?:.*/)?")
            else:
                out.append(".*")
            continue
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            end = pattern.index("]", i)
            out.append("[" + pattern[i + 1 : end].replace("!", "^", 1) + "]")
            i = end
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out) + r"\Z")


@cache
def ignore_patterns() -> tuple[_Pattern, ...]:
    patterns = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exclusion = line.startswith("!")
        text = os.path.normpath(line.removeprefix("!").strip()).lstrip("/")
        patterns.append(_Pattern(_translate(text), exclusion, text))
    return tuple(patterns)


def ignored(path: str) -> bool:
    """Docker's rule: the last matching line wins; a line matching a parent folder matches too."""
    parts = path.split("/")
    excluded = False
    for pattern in ignore_patterns():
        if pattern.exclusion != excluded:
            continue
        match = bool(pattern.regex.match(path)) or any(
            pattern.regex.match("/".join(parts[: i + 1])) for i in range(len(parts) - 1)
        )
        if match:
            excluded = not pattern.exclusion
    return excluded


def _may_hold_included(folder: str) -> bool:
    return any(p.exclusion and (p.text == folder or p.text.startswith(folder + "/")) for p in ignore_patterns())


@cache
def context_files() -> tuple[str, ...]:
    """Every file `docker build .` sends, relative to the repository root."""
    out = []
    for dirpath, dirnames, filenames in os.walk(REPO):
        rel_dir = os.path.relpath(dirpath, REPO)
        prefix = "" if rel_dir == "." else f"{rel_dir}/"
        dirnames[:] = sorted(
            d for d in dirnames if d != ".git" and (not ignored(prefix + d) or _may_hold_included(prefix + d))
        )
        out.extend(prefix + name for name in filenames if not ignored(prefix + name))
    return tuple(sorted(out))


def _copy_from_context(source: str, dest: str, root: Path) -> list[str]:
    """Docker's COPY of one context source: a folder's contents into dest, a file into dest."""
    source = os.path.normpath(source)
    target = root / dest.lstrip("/")
    files = [f for f in context_files() if f == source or f.startswith(source + "/")]
    assert files, f"COPY {source}: nothing in the build context (missing, or excluded by .dockerignore)"
    copied = []
    for rel in files:
        if rel == source:  # a single file
            out = target / Path(rel).name if dest.endswith("/") else target
        else:
            out = target / os.path.relpath(rel, source)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, out)
        copied.append(rel)
    return copied


def build_protos_stage(model: DockerfileModel, workspace: Path) -> Path:
    """Run the protos stage's COPY and RUN lines (its pip install aside: the venv has grpcio-tools)
    in ``workspace``, standing for its WORKDIR; returns that folder."""
    stage = model.stages["protos"]
    workdir = workspace / "src"
    workdir.mkdir(parents=True)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    for command in stage.commands:
        if command.cmd == "COPY":
            for source in command.value[:-1]:
                _copy_from_context(source, str(workdir / command.value[-1]), Path("/"))
        elif command.cmd == "RUN" and not command.value[0].lstrip().startswith("pip "):
            result = subprocess.run(
                ["bash", "-o", "pipefail", "-c", command.value[0]],
                cwd=workdir,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert result.returncode == 0, f"protos stage: {command.original}\n{result.stderr}"
    return workdir


def assemble(model: DockerfileModel, target: str, root: Path, protos_src: Path) -> Path:
    """Lay out ``target``'s files under ``root`` as the image would have them; returns ``root``."""
    for copy in model.copies(target):
        if copy.from_stage is None:
            for source in copy.sources:
                _copy_from_context(source, copy.dest, root)
        elif copy.from_stage == "protos":
            for source in copy.sources:
                rel = os.path.relpath(source, model.workdir("protos"))
                shutil.copytree(protos_src / rel, root / copy.dest.lstrip("/"), dirs_exist_ok=True)
        else:
            assert copy.sources == (VENV_PATH,), f"unexpected COPY --from={copy.from_stage} {copy.sources}"
    return root


def image_path(root: Path, path: str) -> Path:
    return root / path.lstrip("/")
