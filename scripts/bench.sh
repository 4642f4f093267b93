#!/usr/bin/env bash
# Runs custos's benchmarks and writes their tables into BENCHMARKS.md (between markers), as ratios
# against a peer measured in the same run. Today: the authorization cost benchmark (criterion).
# The side-by-side cluster benchmarks against etcd (issue #7) will be added here.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo bench --locked -p custos-auth --bench authorize -- --warm-up-time 2 --measurement-time 5

python3 - <<'PY'
import json, pathlib, re
root = pathlib.Path("target/criterion")
def median_ns(group, name):
    est = json.loads((root / group / name / "new" / "estimates.json").read_text())
    return est["median"]["point_estimate"]
rows = ["| algorithm | signature only | token verification | role + ownership checks | full authorization | checks / verification |",
        "|---|---|---|---|---|---|"]
fmt = lambda ns: f"{ns / 1000:.2f} µs"
for alg in ["HS256", "RS256", "ES256", "EdDSA"]:
    sig, ver, checks, full = (median_ns(alg, n) for n in ("signature_only", "token_verification", "role_and_ownership", "full_authorization"))
    rows.append(f"| {alg} | {fmt(sig)} | {fmt(ver)} | {checks:.0f} ns | {fmt(full)} | {100 * checks / ver:.2f}% |")
table = "\n".join(rows)
path = pathlib.Path("BENCHMARKS.md")
text = path.read_text()
new = re.sub(r"(<!-- auth-bench:begin -->\n).*?(<!-- auth-bench:end -->)", lambda m: m.group(1) + table + "\n" + m.group(2), text, flags=re.S)
path.write_text(new)
print(table)
PY
