#!/usr/bin/env bash
# Runs one chaos run of custos (issue #9) of any length: a real cluster of custos processes on
# 127.0.0.1, concurrent clients under different tokens, faults from a seeded schedule (kill -9
# and restart of the leader or a follower, SIGSTOP pauses, partitions through a peer proxy,
# peer delay and connection drops), then the checks (linearizability per tenant, lost and
# doubled mutations against the audit trail, stale permissions, convergence, panics, memory
# and disk). Writes report.json, summary.txt and history.jsonl, and prints the summary.
#
#   scripts/chaos.sh --nodes 5 --minutes 10 --seed 42
#   scripts/chaos.sh --release --minutes 30            # release binaries; a random seed
#   scripts/chaos.sh --seconds 60 --faults kill_leader,split_minority --out /tmp/run
#   CUSTOS_BIN=/path/to/custos scripts/chaos.sh --nodes 5 --minutes 2   # test another binary
#
# Other flags go to custos-chaos (--tenants, --clients-per-tenant, --epoch-secs,
# --max-rss-mib, --max-data-mib; --help lists them). Exit code 1 when a check fails.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

profile=debug
build_flags=()
args=()
have_out=0
for a in "$@"; do
  case "$a" in
    --release) profile=release; build_flags+=(--release) ;;
    --out) have_out=1; args+=("$a") ;;
    *) args+=("$a") ;;
  esac
done

# `--workspace` (not `-p`): cargo unifies features over the packages selected, so this builds the
# same artifacts as scripts/test.sh instead of a second copy of our crates.
# CUSTOS_BIN, when set, names the custos binary to test (another build, an older release);
# then only the harness is built.
bins=(--bin custos-chaos)
if [ -z "${CUSTOS_BIN:-}" ]; then bins+=(--bin custos); fi
cargo build --locked "${build_flags[@]}" --workspace "${bins[@]}"
target="${CARGO_TARGET_DIR:-$PWD/target}"
if [ "$have_out" = 0 ]; then
  args+=(--out "$target/chaos/run-$(date +%Y%m%d-%H%M%S)")
fi
CUSTOS_BIN="${CUSTOS_BIN:-$target/$profile/custos}" exec "$target/$profile/custos-chaos" "${args[@]}"
