#!/usr/bin/env bash
# CI smoke test of the benchmark harness (bench/run_bench.py --smoke): one tiny plan, one
# repetition, natively and under rove BT (one Debian kernel boot), two micro benchmarks; then
# checks that the JSON and markdown it wrote are well-formed and hold every row with figures.
# Usage: bench_smoke_test.sh ROVE ROVE_BENCH SOURCE_DIR OUT_DIR
set -uo pipefail
ROVE=$1
ROVE_BENCH=$2
SRC=$3
OUT=$4
rm -rf "$OUT"
mkdir -p "$OUT"

start=$(date +%s)
ROVE_GUEST_DIR="$OUT/guest" timeout 170 python3 "$SRC/bench/run_bench.py" --smoke \
  --engines native,rove-bt --rove "$ROVE" --rove-bench "$ROVE_BENCH" --work "$OUT/work" \
  --out-dir "$OUT/results" --boot-timeout 150 >"$OUT/harness.log" 2>&1
rc=$?
echo "harness exit $rc after $(( $(date +%s) - start )) s"
tail -5 "$OUT/harness.log"
[ $rc = 0 ] || { echo "FAIL: harness failed"; cat "$OUT/harness.log"; tail -20 "$OUT"/work/logs/*.log; exit 1; }

python3 - "$OUT/results" <<'PY'
import glob, json, sys
results = sys.argv[1]
jsons = glob.glob(results + "/smoke-*.json")
mds = glob.glob(results + "/smoke-*.md")
assert len(jsons) == 1 and len(mds) == 1, (jsons, mds)
doc = json.load(open(jsons[0]))
md = open(mds[0]).read()
failures = []
def check(cond, what):
    print(("ok: " if cond else "FAIL: ") + what)
    if not cond:
        failures.append(what)
check(doc["engines"] == ["native", "rove-bt"], "engines are native and rove-bt")
rows = {(r["case"], r["config"]): r for r in doc["table"]}
for case in ("int", "syscall"):
    row = rows.get((case, "1cpu"))
    check(row is not None, f"table has the {case} row")
    if row is None:
        continue
    for engine in ("native", "rove-bt"):
        cell = row["engines"].get(engine)
        check(isinstance(cell, dict) and cell["n"] == 1 and cell["median"] > 0,
              f"{case}: {engine} has one positive figure ({cell})")
    check(row.get("rove_over_native", 0) > 0, f"{case}: rove/native ratio present")
    check(f"| {case} (" in md, f"markdown has the {case} row")
check(not doc["check_mismatches"], "int digests agree between native and rove")
boot = [b for b in doc["boot"] if b["engine"] == "rove-bt"]
check(len(boot) == 1 and boot[0]["rc"] == 0, "rove-bt booted and powered off (exit 0)")
check(bool(boot) and (boot[0].get("to_init_s") or 0) > 0 and
      (boot[0].get("uptime_at_init_s") or 0) > 0, "boot figures present")
check(bool(boot) and boot[0].get("clocksource") not in (None, "unknown"), "guest clocksource recorded")
clock = [c for c in doc["clock_check"] if c["engine"] == "rove-bt"]
check(len(clock) == 1 and clock[0]["guest_s"] > 0 and
      0.5 < clock[0]["guest_s"] / clock[0]["wall_s"] < 2.0,
      f"guest clock agrees with the wall clock within 2x ({clock})")
micro = {r["name"]: r for r in (doc.get("micro") or {}).get("rows", [])}
check("BM_ChainedBranch" in micro and "BM_Cpuid" in micro, "micro benchmarks ran")
check(all("error" not in r for r in micro.values()), "micro benchmarks without errors")
check("## Micro benchmarks" in md and "| BM_Cpuid |" in md, "markdown has the micro table")
sys.exit(1 if failures else 0)
PY
