#!/usr/bin/env bash
# Runs custos's benchmarks and writes their tables into BENCHMARKS.md (between markers), as ratios
# against a peer measured in the same run: the authorization cost and audit List benchmarks (criterion).
# The side-by-side cluster benchmarks against etcd (issue #7) will be added here.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo bench --locked -p custos-auth --bench authorize -- --warm-up-time 2 --measurement-time 5
# Builds a 1,000,000-record audit trail first (about two minutes), then measures List.
cargo bench --locked -p custos-store --bench audit_list -- --warm-up-time 1 --measurement-time 3

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
print(table)

def fmt_t(ns):
    return f"{ns / 1e6:.2f} ms" if ns < 1e9 else f"{ns / 1e9:.2f} s"
indexed = median_ns("audit_list_1m", "first_page_by_user")
audit_rows = ["| query (1,000,000 records, page of 100) | median | vs. the indexed query | target |", "|---|---|---|---|"]
for name, label, target in [
    ("first_page_by_user", "first page by user (username index)", "< 100 ms"),
    ("first_page_by_user_newest_first", "first page by user, newest first", "< 100 ms"),
    ("first_page_by_method_scan", "first page by method (scan; 1 in 10 match)", ""),
    ("first_page_by_user_scan", "peer: the same user's first 100 found by scanning", ""),
]:
    ns = median_ns("audit_list_1m", name)
    audit_rows.append(f"| {label} | {fmt_t(ns)} | {ns / indexed:.2f}x | {target} |")
audit_table = "\n".join(audit_rows)
new = re.sub(r"(<!-- audit-bench:begin -->\n).*?(<!-- audit-bench:end -->)", lambda m: m.group(1) + audit_table + "\n" + m.group(2), new, flags=re.S)
path.write_text(new)
print(audit_table)
PY
