#!/usr/bin/env bash
# Benchmark: `revshare ingest`, `statement preview` and `close` on the embedded SQLite store and on
# PostgreSQL, beside the baselines of ../shared/bench (SQLite INSERT OR IGNORE, PostgreSQL
# COPY + ON CONFLICT), on the same file in the same run.
# usage: bench/ingest.sh USAGE.jsonl
# Needs PostgreSQL at 127.0.0.1:5432 (trust auth) and `pip install orjson` for the SQLite baseline.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
shared="$root/../shared/bench"
[ -d "$shared" ] || { echo "$0: the baselines are in the product team's shared folder, expected at $shared (beside the clone)" >&2; exit 2; }
file=${1:?usage: bench/ingest.sh USAGE.jsonl}
(cd "$root" && cargo build --release --locked -p revshare-cli >/dev/null 2>&1)
bin="$root/target/release/revshare"
work=$(mktemp -d)
trap 'rm -rf "$work"; psql -X -h 127.0.0.1 -U postgres -d postgres -qc "drop database if exists revshare_bench" >/dev/null 2>&1 || true' EXIT
records=$(wc -l <"$file")
t() { /usr/bin/time -f "%e" "$@" 2>&1 >/dev/null | tail -1; }
rate() { python3 -c "print(f'{$records/$1:,.0f} records/s')"; }
register() {
  "$bin" "$@" init >/dev/null
  "$bin" "$@" party add lic --name Licensor --role licensor >/dev/null
  for h in h1 h2 h3 h4 h5 h6 h7 h8; do "$bin" "$@" party add "$h" --name "$h" --role host >/dev/null; done
  for m in m-8b m-70b m-405b; do "$bin" "$@" model add "$m" --owner lic >/dev/null; done
  "$bin" "$@" agreement add "$shared/agreement-h1.toml" >/dev/null
}
echo "machine: $(nproc) cores; $(date -u +%Y-%m-%d); $records records ($(du -h "$file" | cut -f1))"
cat "$file" >/dev/null

register --data "$work/sqlite"
s=$(t "$bin" --data "$work/sqlite" ingest "$file" --batch-size 50000)
echo "revshare ingest, SQLite (durable, deduplicated, rolled up): $s s, $(rate "$s")"
v=$( { /usr/bin/time -f "%e" "$bin" --data "$work/sqlite" statement preview --agreement bench-h1 --period 2026-10 --format json >/dev/null; } 2>&1 | tail -1)
echo "revshare statement preview (the open month), SQLite: $v s (whole command)"
c=$( { /usr/bin/time -f "%e" "$bin" --data "$work/sqlite" close --agreement bench-h1 --period 2026-10 --format json >/dev/null; } 2>&1 | tail -1)
echo "revshare close, SQLite: $c s (whole command)"
b=$(t python3 "$shared/sqlite_ingest.py" "$file" "$work/baseline.db" FULL)
echo "baseline SQLite INSERT OR IGNORE: $b s, $(rate "$b")"

if psql -X -h 127.0.0.1 -U postgres -d postgres -qc 'select 1' >/dev/null 2>&1; then
  psql -X -h 127.0.0.1 -U postgres -d postgres -qc 'drop database if exists revshare_bench' -c 'create database revshare_bench' >/dev/null
  url=postgres://postgres@127.0.0.1:5432/revshare_bench
  register --database "$url"
  p=$(t "$bin" --database "$url" ingest "$file" --batch-size 50000)
  echo "revshare ingest, PostgreSQL: $p s, $(rate "$p")"
  v=$( { /usr/bin/time -f "%e" "$bin" --database "$url" statement preview --agreement bench-h1 --period 2026-10 --format json >/dev/null; } 2>&1 | tail -1)
  echo "revshare statement preview (the open month), PostgreSQL: $v s (whole command)"
  c=$( { /usr/bin/time -f "%e" "$bin" --database "$url" close --agreement bench-h1 --period 2026-10 --format json >/dev/null; } 2>&1 | tail -1)
  echo "revshare close, PostgreSQL: $c s (whole command)"
  psql -X -h 127.0.0.1 -U postgres -d postgres -qc 'drop database if exists revshare_baseline' -c 'create database revshare_baseline' >/dev/null
  q=$(t sh -c "psql -X -h 127.0.0.1 -U postgres -d revshare_baseline -v method=onconflict -f '$shared/pg_ingest_copy.sql' < '$file'")
  echo "baseline PostgreSQL COPY + ON CONFLICT: $q s, $(rate "$q")"
fi
