"""LiteLLM's proxy for the comparison: one worker, ``openai/<model>`` pointed at the same mock.

It lives in its own virtualenv under ``bench/.work/`` (made by ``bench/setup.sh``, kept between
runs) so its dependencies never meet ModelRouter's.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

from bench.processes import ManagedProcess
from bench.targets import LITELLM, Target

VERSION = "1.80.0"
VENV = Path(__file__).resolve().parent / ".work" / "litellm-venv"
MODEL = "bench-model"
KEY = "sk-litellm-bench-0123456789"

CONFIG = """\
model_list:
  - model_name: {model}
    litellm_params:
      model: openai/bench-upstream
      api_base: http://127.0.0.1:{mock_port}/v1
      api_key: sk-mock-upstream
general_settings:
  master_key: {key}
"""


def litellm_binary() -> Path:
    binary = VENV / "bin" / "litellm"
    if not binary.exists():
        raise RuntimeError(f"LiteLLM is not installed at {VENV}: run `bash bench/setup.sh litellm`")
    return binary


def installed_version() -> str:
    for meta in (VENV / "lib").glob("python*/site-packages/litellm-*.dist-info/METADATA"):
        for line in meta.read_text().splitlines():
            if line.startswith("Version:"):
                return line.split(":", 1)[1].strip()
    return "unknown"


def _alive(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/liveliness", timeout=1) as response:
            return bool(response.status == 200 and json.loads(response.read()) == "I'm alive!")
    except (urllib.error.URLError, OSError, ValueError):
        return False


def start_litellm(workdir: Path, mock_port: int, port: int) -> tuple[ManagedProcess, Target]:
    config = workdir / "litellm.yaml"
    config.write_text(CONFIG.format(model=MODEL, mock_port=mock_port, key=KEY))
    command = [
        str(litellm_binary()),
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        "1",
    ]
    # Offline: the cost map shipped in the package instead of a download; no usage telemetry. No
    # DATABASE_URL: LiteLLM would take ModelRouter's for its own key store and run Prisma on it.
    env: dict[str, str | None] = {
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_TELEMETRY": "False",
        "DATABASE_URL": None,
    }
    proxy = ManagedProcess("litellm", command, workdir / "litellm.log", env=env, cwd=workdir)
    proxy.start(lambda: _alive(port), timeout_s=120)
    return proxy, Target(LITELLM, port, MODEL, KEY, {"litellm": proxy.pid})
