#!/usr/bin/env bash
# Installs what the benchmark needs; safe to re-run (each step is skipped when already done).
#   bash bench/setup.sh tools     wrk (Debian package) and the project's `bench` extra (matplotlib, py-spy)
#   bash bench/setup.sh litellm   LiteLLM's proxy in its own virtualenv, bench/.work/litellm-venv (cached)
#   bash bench/setup.sh [all]     both
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
PYTHON=${PYTHON:-python3.11}
LITELLM_VERSION=1.80.0
LITELLM_VENV=bench/.work/litellm-venv

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "setup: need root to run: $*" >&2; return 1; fi
}

install_wrk() {
  command -v wrk >/dev/null && return 0
  echo "setup: installing wrk (apt)" >&2
  if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null 2>&1; then
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
  fi
  command -v wrk >/dev/null
}

install_bench_extra() {
  "$PY" -c 'import matplotlib' 2>/dev/null && test -x "$(dirname "$PY")/py-spy" && return 0
  echo "setup: installing the bench extra into $(dirname "$(dirname "$PY")")" >&2
  "$PY" -m pip install -q -e '.[bench]'
}

install_litellm() {
  local stamp=$LITELLM_VENV/.installed-$LITELLM_VERSION
  [ -f "$stamp" ] && return 0
  echo "setup: installing litellm[proxy]==$LITELLM_VERSION into $LITELLM_VENV (once; cached)" >&2
  rm -rf "$LITELLM_VENV"
  mkdir -p "$(dirname "$LITELLM_VENV")"
  "$PYTHON" -m venv "$LITELLM_VENV"
  "$LITELLM_VENV/bin/python" -m pip install -q --upgrade pip
  "$LITELLM_VENV/bin/python" -m pip install -q "litellm[proxy]==$LITELLM_VERSION"
  touch "$stamp"
}

case "${1:-all}" in
  tools) install_wrk; install_bench_extra ;;
  litellm) install_litellm ;;
  all) install_wrk; install_bench_extra; install_litellm ;;
  *) echo "usage: $0 [tools|litellm|all]" >&2; exit 2 ;;
esac
