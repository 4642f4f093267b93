#!/usr/bin/env bash
# Runs the custos fuzz targets for N minutes in all, split evenly among them:
#   token    JWT parsing and verification (custos_auth::fuzz)
#   rules    role rule matching against a reference matcher (custos_model::fuzz)
#   convert  SDK/admin wire messages → model → wire (custos_proto::fuzz)
#   codec    the store's value codec: log entries, commands, snapshots (custos_store::fuzz)
#
#   scripts/fuzz.sh --minutes N [--target NAME]... [--engine auto|libfuzzer|builtin] [--seed S]
#
# Engines: `libfuzzer` (coverage-guided, `cargo +nightly fuzz` on the targets in fuzz/; needs a
# nightly toolchain, and installs cargo-fuzz with cargo if it is missing) or `builtin` (the
# custos-fuzz mutational engine on stable, crates/fuzz). `auto` (the default) takes libfuzzer
# when `rustup run nightly` works, else builtin.
# Inputs that reached new paths go to fuzz/corpus/<target>/ (kept between runs); a failing input
# goes to fuzz/artifacts/ and the script exits 1. `cargo test` runs a short pass of each target.
set -euo pipefail
cd "$(dirname "$0")/.."

minutes=5
engine=auto
seed=$(date +%s)
targets=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --minutes) minutes="$2"; shift 2 ;;
    --target) targets+=("$2"); shift 2 ;;
    --engine) engine="$2"; shift 2 ;;
    --seed) seed="$2"; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "fuzz.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
  esac
done
[[ "$minutes" =~ ^[0-9]+$ && "$minutes" -gt 0 ]] || { echo "fuzz.sh: --minutes takes a positive whole number" >&2; exit 2; }
[[ ${#targets[@]} -gt 0 ]] || targets=(token rules convert codec)
total=$((minutes * 60))
per=$((total / ${#targets[@]}))
(( per > 0 )) || per=1
corpus="$PWD/fuzz/corpus"
artifacts="$PWD/fuzz/artifacts"
mkdir -p "$corpus" "$artifacts"
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"

have_nightly() { rustup run nightly rustc --version >/dev/null 2>&1; }
if [[ "$engine" == auto ]]; then
  if have_nightly; then engine=libfuzzer; else engine=builtin; fi
fi

target_args=()
for t in "${targets[@]}"; do target_args+=(--target "$t"); done
# The fuzz profile: release with overflow checks and debug assertions (Cargo.toml).
cargo build --profile fuzz -q -p custos-fuzz
fuzz_bin="$target_dir/fuzz/custos-fuzz"

status=0
case "$engine" in
  libfuzzer)
    have_nightly || { echo "fuzz.sh: --engine libfuzzer needs a nightly toolchain (rustup toolchain list)" >&2; exit 2; }
    if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
      echo "==> installing cargo-fuzz"
      cargo +nightly install --locked cargo-fuzz
    fi
    # libFuzzer starts from the same seeds as the builtin engine, plus the corpus so far.
    "$fuzz_bin" "${target_args[@]}" --write-seeds "$corpus"
    for t in "${targets[@]}"; do
      mkdir -p "$artifacts/$t"
      echo "==> $t: libFuzzer for ${per}s"
      # -a: debug assertions and overflow checks, as in the builtin engine's profile.
      (cd fuzz && cargo +nightly fuzz run -a "$t" "$corpus/$t" -- \
        -max_total_time="$per" -seed="$seed" -rss_limit_mb=4096 -malloc_limit_mb=2048 \
        -artifact_prefix="$artifacts/$t/" -print_final_stats=1) || status=1
    done
    ;;
  builtin)
    echo "==> ${targets[*]}: the custos-fuzz engine for ${total}s in all (seed $seed)"
    "$fuzz_bin" "${target_args[@]}" --seconds "$total" --seed "$seed" \
      --corpus "$corpus" --crashes "$artifacts" || status=$?
    # A target that aborted the process (no panic to catch) left its input in flight.
    for f in "$artifacts"/*.in-flight; do
      [[ -e "$f" ]] || continue
      keep="${f%.in-flight}-abort-$seed"
      mv "$f" "$keep"
      echo "fuzz.sh: the process died on the input now in $keep" >&2
      status=1
    done
    ;;
  *) echo "fuzz.sh: unknown engine $engine (auto, libfuzzer, builtin)" >&2; exit 2 ;;
esac

if (( status != 0 )); then
  echo "fuzz.sh: FAILED: see $artifacts (replay: $fuzz_bin --replay FILE --target NAME)" >&2
  exit 1
fi
echo "fuzz.sh: no failures"
