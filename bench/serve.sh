#!/usr/bin/env bash
# Benchmark: `revshare serve` under load on loopback, beside `revshare ingest` of the same file.
# usage: bench/serve.sh WORK_DIR [RECORDS] [CLIENTS]   (defaults 1000000, 8)
# Generates RECORDS usage records of hosts h1..h4, then (1) ingests them with the CLI into one
# fresh SQLite store, (2) starts `revshare serve` on another fresh store and posts them in
# 1,000-record batches from CLIENTS concurrent clients (the compiled load generator
# crates/revshare-server/examples/load.rs, on the same machine), then (3) reads h1's October
# statement and its balances at 1,000 requests/s for 10 s, and (4) with h2's token, which reads
# none of h1's business, h1's agreement and statement beside ones that do not exist, every
# answer 404: the two should take the same time.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
shared="$root/../shared/bench"
[ -d "$shared" ] || { echo "$0: the baselines are in the product team's shared folder, expected at $shared (beside the clone)" >&2; exit 2; }
work=${1:?usage: bench/serve.sh WORK_DIR [RECORDS] [CLIENTS]}
n=${2:-1000000}
clients=${3:-8}
(cd "$root" && cargo build --release --locked -p revshare-cli -p revshare-server --bin revshare --example load >/dev/null)
bin="$root/target/release/revshare"
load="$root/target/release/examples/load"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u +%Y-%m-%d)"
rm -rf "$work" && mkdir -p "$work"
register() {
  "$bin" --data "$1" init >/dev/null
  "$bin" --data "$1" party add lic --name Licensor --role licensor >/dev/null
  for h in h1 h2 h3 h4; do "$bin" --data "$1" party add "$h" --name "$h" --role host >/dev/null; done
  for m in m-8b m-70b m-405b; do "$bin" --data "$1" model add "$m" --owner lic >/dev/null; done
  "$bin" --data "$1" agreement add "$shared/agreement-h1.toml" >/dev/null
}
"$bin" gen usage --records "$n" --seed 42 --hosts h1,h2,h3,h4 --dup-rate 0 --out "$work/usage.jsonl" >/dev/null
cat "$work/usage.jsonl" >/dev/null
register "$work/cli"
echo "revshare ingest (CLI, batches of 1,000): $(/usr/bin/time -f '%e s' "$bin" --data "$work/cli" ingest "$work/usage.jsonl" --batch-size 1000 2>&1 >/dev/null | tail -1)"
echo "revshare ingest (CLI, batches of 50,000): $( rm -rf "$work/cli" && register "$work/cli" && /usr/bin/time -f '%e s' "$bin" --data "$work/cli" ingest "$work/usage.jsonl" --batch-size 50000 2>&1 >/dev/null | tail -1)"
# The CLI runs leave hundreds of megabytes of dirty pages: written back now, not during the
# server's run, where the kernel's writeback would hold up its commits' syncs.
sync
register "$work/srv"
python3 - "$bin" "$work" <<'PY'
import json, subprocess, sys
bin, work = sys.argv[1], sys.argv[2]
tokens = {h: subprocess.run([bin, "--data", f"{work}/srv", "token", "create", "--party", h, "--role", "host"], capture_output=True, text=True, check=True).stdout.strip() for h in ["h1", "h2", "h3", "h4"]}
json.dump(tokens, open(f"{work}/tokens.json", "w"))
PY
"$bin" --data "$work/srv" serve --listen 127.0.0.1:0 --rate-limit 0 >"$work/serve.out" 2>"$work/serve.err" &
server=$!
trap 'kill -TERM $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q 'listening on' "$work/serve.out" && break; sleep 0.1; done
url=$(grep -o 'http://[0-9.:]*' "$work/serve.out" | head -1)
"$load" ingest "$url" "$work/usage.jsonl" "$work/tokens.json" "$clients" 1000
"$bin" --data "$work/srv" close --agreement bench-h1 --period 2026-10 >/dev/null
"$load" read "$url" "$(python3 -c "import json;print(json.load(open('$work/tokens.json'))['h1'])")" 10 1000 /v1/statements/bench-h1/2026-10 /v1/balances
h2=$(python3 -c "import json;print(json.load(open('$work/tokens.json'))['h2'])")
"$load" absent "$url" "$h2" 10 1000 /v1/agreements/bench-h1 /v1/agreements/bench-h9 /v1/statements/bench-h1/2026-10 /v1/statements/bench-h9/2026-10
