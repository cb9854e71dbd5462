"""The repository's Dockerfile as data: stages, the chain a target builds on, and what each target
copies, runs and declares. Parsed with the `dockerfile` package (BuildKit's own Go parser)."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import dockerfile

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
SERVICES = ("gateway", "router", "workers", "accounting")


@dataclass(frozen=True)
class Copy:
    sources: tuple[str, ...]
    dest: str
    from_stage: str | None
    chown: str | None
    stage: str


@dataclass
class Stage:
    name: str
    base: str
    commands: list[dockerfile.Command] = field(default_factory=list)


def _flag(command: dockerfile.Command, name: str) -> str | None:
    for flag in command.flags:
        if flag.startswith(f"--{name}="):
            return str(flag.split("=", 1)[1])
    return None


@dataclass
class DockerfileModel:
    stages: dict[str, Stage]
    global_args: dict[str, str]

    def chain(self, target: str) -> list[Stage]:
        """The stages a target is built from, base first (FROM <stage> links only)."""
        out: list[Stage] = []
        name: str | None = target
        while name in self.stages:
            stage = self.stages[name]
            out.append(stage)
            name = stage.base
        return list(reversed(out))

    def commands(self, target: str, cmd: str) -> list[dockerfile.Command]:
        return [c for stage in self.chain(target) for c in stage.commands if c.cmd == cmd]

    def last(self, target: str, cmd: str) -> dockerfile.Command | None:
        found = self.commands(target, cmd)
        return found[-1] if found else None

    def copies(self, target: str) -> list[Copy]:
        out = []
        for stage in self.chain(target):
            for c in stage.commands:
                if c.cmd == "COPY":
                    out.append(
                        Copy(
                            sources=tuple(c.value[:-1]),
                            dest=c.value[-1],
                            from_stage=_flag(c, "from"),
                            chown=_flag(c, "chown"),
                            stage=stage.name,
                        )
                    )
        return out

    def cmd(self, target: str) -> list[str]:
        command = self.last(target, "CMD")
        assert command is not None, f"target {target} has no CMD"
        return list(command.value) if command.json else shlex.split(command.value[0])

    def env(self, target: str) -> dict[str, str]:
        out: dict[str, str] = {}
        for command in self.commands(target, "ENV"):
            pairs = command.value
            out.update({pairs[i]: pairs[i + 1] for i in range(0, len(pairs), 2)})
        return out

    def workdir(self, target: str) -> str:
        command = self.last(target, "WORKDIR")
        return command.value[0] if command else "/"

    def user(self, target: str) -> str | None:
        command = self.last(target, "USER")
        return command.value[0] if command else None

    def args(self, stage: str) -> dict[str, str]:
        out = {}
        for command in self.stages[stage].commands:
            if command.cmd == "ARG":
                name, _, default = command.value[0].partition("=")
                out[name] = default
        return out

    def healthcheck(self, target: str) -> list[str] | None:
        """The HEALTHCHECK command in effect for a target (None when absent or NONE)."""
        command = self.last(target, "HEALTHCHECK")
        if command is None or command.value[0].upper() == "NONE":
            return None
        assert command.value[0] == "CMD" and command.json, f"use the exec form: {command.original}"
        return list(command.value[1:])


@cache
def load(path: Path = DOCKERFILE) -> DockerfileModel:
    stages: dict[str, Stage] = {}
    global_args: dict[str, str] = {}
    current: Stage | None = None
    for command in dockerfile.parse_file(str(path)):
        if command.cmd == "FROM":
            values = list(command.value)
            base = values[0]
            name = values[2] if len(values) >= 3 and values[1].upper() == "AS" else f"stage-{len(stages)}"
            current = Stage(name=name, base=base)
            stages[name] = current
        elif current is None:
            if command.cmd == "ARG":
                key, _, default = command.value[0].partition("=")
                global_args[key] = default
        else:
            current.commands.append(command)
    return DockerfileModel(stages=stages, global_args=global_args)
