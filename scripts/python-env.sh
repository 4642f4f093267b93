#!/usr/bin/env bash
# Creates (or refreshes) the Python virtualenv at <repo>/.venv used by cluster-tests/python.
# Idempotent: packages are (re)installed only when cluster-tests/python/requirements.txt
# changed since the last successful install (a checksum stamp is kept inside .venv).
# Prints the venv path on stdout; progress goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
VENV="$ROOT/.venv"
REQS="$ROOT/cluster-tests/python/requirements.txt"
STAMP="$VENV/.custos-requirements.sha256"

log() { printf 'python-env: %s\n' "$*" >&2; }

# A Python interpreter able to create venvs (needs the venv and ensurepip modules).
can_venv() { "$1" -c 'import venv, ensurepip' >/dev/null 2>&1; }
pick_python() {
  local py
  for py in "${PYTHON:-python3}" python3 /usr/bin/python3; do
    if command -v "$py" >/dev/null 2>&1 && can_venv "$py"; then
      echo "$py"
      return 0
    fi
  done
  return 1
}

# A venv whose interpreter no longer runs (moved repo, removed Python) is rebuilt from scratch.
if [ -d "$VENV" ] && ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
  log "existing $VENV is broken; recreating it"
  rm -rf "$VENV"
fi

if [ ! -x "$VENV/bin/python" ]; then
  if ! PY="$(pick_python)"; then
    log "python3 cannot create virtualenvs; installing python3-venv with apt-get"
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update >&2
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y python3-venv >&2
    PY="$(pick_python)" || { log "still no Python with the venv module"; exit 1; }
  fi
  log "creating $VENV with $("$PY" --version 2>&1)"
  "$PY" -m venv "$VENV"
  rm -f "$STAMP"
fi

WANT="$(sha256sum "$REQS" | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  log "installing $(basename "$REQS") into $VENV"
  "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input -q -r "$REQS" >&2
  rm -f "$STAMP"
else
  log "requirements unchanged; nothing to install"
fi

# The client wheel ships its own top-level google/__init__.py (a regular package, not a
# namespace one). Inside one site-packages directory google.protobuf still resolves next to it;
# check that, and the client modules, before declaring the environment ready.
verify() {
  "$VENV/bin/python" - <<'PY' >&2
import google.protobuf
import grpc
import jwt
import pytest
from google.protobuf import descriptor_pb2, timestamp_pb2
from openstorage import api_pb2, api_pb2_grpc, connector

assert api_pb2.DESCRIPTOR.package == "openstorage.api", api_pb2.DESCRIPTOR.package
print(f"python-env: openstorage client OK (protobuf {google.protobuf.__version__}, grpcio {grpc.__version__})")
PY
}
if ! verify; then
  rm -f "$STAMP" # force a reinstall next time
  log "the venv at $VENV cannot import the OpenStorage client"
  exit 1
fi

echo "$WANT" >"$STAMP"
echo "$VENV"
