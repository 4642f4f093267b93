#!/usr/bin/env bash
# Runs every custos test: formatting, Rust unit and integration tests (openraft's storage suite,
# the tidy rules, real 3-node clusters), the wire-descriptor comparison against the official
# Python client's wheel, and the Python client suite against a real cluster.
# Installs what it needs (a Python venv with pinned packages; openssl, chromium and chromedriver,
# nodejs and npm from Debian's packages when missing; the pinned oidc-provider npm package into
# target/oidc-provider) by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
# A clean clone gains nothing from incremental artifacts, and they were a quarter of the target
# dir; a developer's own setting wins.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"

# Test steps run to the end even when one fails, so one run shows every failure; the script exits
# non-zero if any did.
failed=()
check() { "$@" || failed+=("$*"); }

step() { printf '\n==> %s\n' "$*"; }

step "Python environment (.venv)"
bash scripts/python-env.sh

step "openssl (deploy/kubernetes/gen-secrets.sh, run by the kubernetes tests)"
if ! command -v openssl >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y openssl
fi
openssl version

step "chromium and chromedriver (the web console's browser test, cluster-tests/python/test_console.py)"
# Debian's own packages: the test runs this browser headless through this driver, and nothing
# downloads a browser of its own.
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver
fi
/usr/bin/chromedriver --version

step "Node.js, npm and the OpenID provider (cluster-tests/tests/oidc.rs runs oidc-provider)"
# Debian's own nodejs and npm; the provider is the version pinned in cluster-tests/oidc/
# package-lock.json, installed with `npm ci` into the target dir (nothing global).
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y nodejs npm
fi
node --version
provider_dir="$target_dir/oidc-provider"
mkdir -p "$provider_dir"
if ! cmp -s cluster-tests/oidc/package-lock.json "$provider_dir/package-lock.json" \
  || [ ! -f "$provider_dir/node_modules/oidc-provider/package.json" ]; then
  cp cluster-tests/oidc/package.json cluster-tests/oidc/package-lock.json "$provider_dir/"
  npm ci --prefix "$provider_dir" --no-audit --no-fund
fi

step "cargo fmt --check"
cargo fmt --all -- --check

# Every cargo command below selects targets from the whole workspace (`--workspace`): features are
# unified over the packages selected, so `-p custos-cluster-tests` alone would build our crates and
# half of the dependencies a second time, without the features other members turn on.
step "build (all targets)"
cargo build --workspace --all-targets --locked

step "Rust tests (unit, golden, property, openraft storage suite, fuzz short passes, the chaos checker, tidy)"
check cargo test --workspace --locked --no-fail-fast --exclude custos-cluster-tests
# The cluster-tests library's own unit tests (the chaos and linearizability checkers) and the tidy
# rules; `--lib` runs the other members' unit tests again too (a few seconds).
check cargo test --workspace --locked --no-fail-fast --lib --test tidy

step "cluster tests (real custos processes on 127.0.0.1)"
# One cluster at a time: each test runs three debug-build nodes on this 2-core machine. (The store's
# `audit` and auth's `config` tests share names with two of these and run again here, in
# well under a second.)
check cargo test --workspace --locked --no-fail-fast --test cluster --test cli --test cli_ops --test keys --test revocation --test freshness --test token_revocation --test quotas --test placement --test usage --test ops --test audit --test rest --test console --test bench --test tls --test attacks --test membership --test config --test snapshots --test contexts_tls --test tutorial --test explain --test kubernetes --test bounds --test oidc --test forwarding --test chaos -- --test-threads=1

step "Python: descriptor comparison and the official client against a real cluster"
"$target_dir/debug/examples/descriptor_set" > "$target_dir/custos-descriptor-set.pb"
check env CUSTOS_DESCRIPTOR_SET="$target_dir/custos-descriptor-set.pb" CUSTOS_BIN="$target_dir/debug/custos" \
  .venv/bin/python -m pytest -q -p no:cacheprovider cluster-tests/python

if [ "${#failed[@]}" -gt 0 ]; then
  printf '\n==> FAILED steps:\n' >&2
  printf '  %s\n' "${failed[@]}" >&2
  exit 1
fi
printf '\n==> all tests passed\n'
