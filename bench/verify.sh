#!/usr/bin/env bash
# Benchmark: `revshare verify` of a statement bundle against `revshare settle` of the same records.
# usage: bench/verify.sh WORK_DIR [RECORDS]   (default 1000000)
# Generates RECORDS usage records of host h1 (no resends), ingests them into a fresh SQLite store
# under ../shared/bench/agreement-h1.toml, closes 2026-10, exports the statement's bundle, then
# runs `verify BUNDLE` and `settle` of the same records (the generated file) three times each,
# alternating, files in the page cache, printing wall time and peak RSS.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
shared="$root/../shared/bench"
[ -d "$shared" ] || { echo "$0: the baselines are in the product team's shared folder, expected at $shared (beside the clone)" >&2; exit 2; }
work=${1:?usage: bench/verify.sh WORK_DIR [RECORDS]}
n=${2:-1000000}
(cd "$root" && cargo build --release --locked -p revshare-cli >/dev/null)
bin="$root/target/release/revshare"
t() { /usr/bin/time -f "%e s wall, %M KB peak" "$@" 2>&1 >/dev/null | tail -1; }
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u +%Y-%m-%d)"
rm -rf "$work" && mkdir -p "$work"
data="$work/data"
r() { "$bin" --data "$data" "$@"; }
r init >/dev/null
r party add lic --name Licensor --role licensor >/dev/null
r party add h1 --name h1 --role host >/dev/null
for m in m-8b m-70b m-405b; do r model add "$m" --owner lic >/dev/null; done
r agreement add "$shared/agreement-h1.toml" >/dev/null
r gen usage --records "$n" --seed 42 --hosts h1 --dup-rate 0 --out "$work/usage.jsonl" >/dev/null
echo "ingest: $(t "$bin" --data "$data" ingest "$work/usage.jsonl" --batch-size 50000)"
r close --agreement bench-h1 --period 2026-10 >/dev/null
r statement export --agreement bench-h1 --period 2026-10 --bundle "$work/bundle"
cat "$work/usage.jsonl" "$work/bundle/records.jsonl" "$work"/bundle/batches/* >/dev/null
for i in 1 2 3; do
  echo "revshare verify: $(t "$bin" verify "$work/bundle" --trust "$data/deployment.key.pub")"
  echo "revshare settle: $(t "$bin" settle --agreement "$work/bundle/agreement.toml" --usage "$work/usage.jsonl" --period 2026-10 --format json)"
done
"$bin" verify "$work/bundle" --trust "$data/deployment.key.pub"
