#!/usr/bin/env bash
# Benchmark: `revshare settle` against the DuckDB baseline of ../shared/bench, in the same run.
# usage: bench/settle.sh DATA_DIR [RECORDS...]   (default records: 1000000 10000000)
# Writes DATA_DIR/usage_<n>.jsonl with ../shared/bench/gen_usage.py if missing, then for each
# size runs both tools three times (alternating, file in the page cache) and prints wall time and
# peak RSS, and checks that the 57 line amounts agree. Needs: pip install duckdb.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
shared="$root/../shared/bench"
[ -d "$shared" ] || { echo "$0: the baselines are in the product team's shared folder, expected at $shared (beside the clone)" >&2; exit 2; }
data=${1:?usage: bench/settle.sh DATA_DIR [RECORDS...]}
shift
sizes=("${@:-1000000 10000000}")
read -r -a sizes <<<"${sizes[*]}"
mkdir -p "$data"
(cd "$root" && cargo build --release --locked -p revshare-cli >/dev/null)
bin="$root/target/release/revshare"
t() { /usr/bin/time -f "%e s wall, %M KB peak" "$@" 2>&1 >/dev/null | tail -1; }
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u +%Y-%m-%d)"
for n in "${sizes[@]}"; do
  f="$data/usage_$n.jsonl"
  [ -s "$f" ] || python3 "$shared/gen_usage.py" --seed 42 --events "$n" --dup-rate 0.01 --out "$f"
  cat "$f" >/dev/null
  echo "== $n records ($(du -h "$f" | cut -f1))"
  for i in 1 2 3; do
    echo "revshare settle: $(t "$bin" settle --agreement "$shared/agreement-h1.toml" --usage "$f" --period 2026-10 --format json)"
    echo "duckdb baseline: $(t python3 "$shared/duckdb_settle_spec.py" "$shared/agreement-h1.toml" "$f" 2026-10 "$data/duck_$n.csv")"
  done
  "$bin" settle --agreement "$shared/agreement-h1.toml" --usage "$f" --period 2026-10 --format json >"$data/revshare_$n.json"
  python3 - "$data/revshare_$n.json" "$data/duck_$n.csv" <<'PY'
import csv, json, sys
ours = json.load(open(sys.argv[1]))
mine = [(l["model"], l["use_case"], l["region"], l["exclusive"], l["amount"]) for l in ours["lines"]]
theirs = [(r["model"], r["use_case"], r["region"], r["exclusive"] == "True", r["amount"]) for r in csv.DictReader(open(sys.argv[2]))]
status = "agree" if mine == theirs else "DIFFER"
print(f"line amounts: {len(mine)} lines, {status} with DuckDB; usage_subtotal {ours['totals']['usage_subtotal']}")
sys.exit(0 if mine == theirs else 1)
PY
done
