#!/usr/bin/env bash
# Benchmark: a full replay of stored records on PostgreSQL (a host resending everything after a
# crash) against their first ingest: wall time of each, and how much the database grew.
# usage: bench/replay.sh USAGE.jsonl [REPLAYS]   (default 2 replays)
# Needs PostgreSQL at 127.0.0.1:5432 (trust auth) and ../shared/bench/agreement-h1.toml.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
shared="$root/../shared/bench"
[ -d "$shared" ] || { echo "$0: the agreement is in the product team's shared folder, expected at $shared (beside the clone)" >&2; exit 2; }
file=${1:?usage: bench/replay.sh USAGE.jsonl [REPLAYS]}
replays=${2:-2}
(cd "$root" && cargo build --release --locked -p revshare-cli >/dev/null 2>&1)
bin="$root/target/release/revshare"
db=revshare_replay
url=postgres://postgres@127.0.0.1:5432/$db
q() { psql -X -h 127.0.0.1 -U postgres -d "$1" -Atqc "$2"; }
trap 'q postgres "drop database if exists $db" >/dev/null 2>&1 || true' EXIT
q postgres "drop database if exists $db" >/dev/null
q postgres "create database $db" >/dev/null
"$bin" --database "$url" init >/dev/null
"$bin" --database "$url" party add lic --name Licensor --role licensor >/dev/null
for h in h1 h2 h3 h4 h5 h6 h7 h8; do "$bin" --database "$url" party add "$h" --name "$h" --role host >/dev/null; done
for m in m-8b m-70b m-405b; do "$bin" --database "$url" model add "$m" --owner lic >/dev/null; done
"$bin" --database "$url" agreement add "$shared/agreement-h1.toml" >/dev/null
cat "$file" >/dev/null
size() { q "$db" "select pg_database_size(current_database())"; }
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u +%Y-%m-%d); $(wc -l <"$file") lines"
t() { /usr/bin/time -f "%e" "$@" 2>&1 >/dev/null | tail -1; }
echo "first ingest: $(t "$bin" --database "$url" ingest "$file" --batch-size 50000) s"
q "$db" "checkpoint" >/dev/null
records=$(q "$db" "select pg_total_relation_size('record_segments')")
before=$(size)
for i in $(seq "$replays"); do
  echo "replay $i: $(t "$bin" --database "$url" ingest "$file" --batch-size 50000) s"
done
q "$db" "checkpoint" >/dev/null
after=$(size)
python3 -c "print(f'records stored: {$records/1e6:.1f} MB; database {$before/1e6:.1f} MB before the replays, {$after/1e6:.1f} MB after: grew {($after-$before)/1e6:.2f} MB, {100*($after-$before)/$records:.2f}% of the records\' size')"
