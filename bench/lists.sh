#!/usr/bin/env bash
# Benchmark: the API's statement and payment lists with 100,000 statements and 1,000,000 payments
# stored (issue: an API a host's engineers can integrate in an afternoon).
# usage: bench/lists.sh WORK_DIR [AGREEMENTS] [MONTHS] [PAYMENTS_PER_AGREEMENT] [SECONDS]
#        (defaults 1000, 100, 1000, 10: 100,000 statements, 1,000,000 payments)
# Registers a licensor and AGREEMENTS hosts, each with an agreement (the CLI), then writes the
# statements (original, one a month), their amounts, the payments' journal entries and postings
# and what each host paid straight into the SQLite store in one transaction (the store's own
# paths would take hours: a close settles a month, a payment rereads its agreement's journal).
# Then it serves the store and reads pages of both lists at 1,000 requests/s for SECONDS with the
# compiled load generator (crates/revshare-server/examples/load.rs): as the licensor (every
# agreement), as one host, a month range, a state filter and a page deep in one agreement.
# Goal: p99 < 10 ms.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
shared="$root/../shared/bench"
[ -d "$shared" ] || { echo "$0: the agreement is in the product team's shared folder, expected at $shared (beside the clone)" >&2; exit 2; }
work=${1:?usage: bench/lists.sh WORK_DIR [AGREEMENTS] [MONTHS] [PAYMENTS_PER_AGREEMENT] [SECONDS]}
agreements=${2:-1000}
months=${3:-100}
payments=${4:-1000}
seconds=${5:-10}
(cd "$root" && cargo build --release --locked -p revshare-cli -p revshare-server --bin revshare --example load >/dev/null)
bin="$root/target/release/revshare"
load="$root/target/release/examples/load"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u +%Y-%m-%d)"
rm -rf "$work" && mkdir -p "$work"
data="$work/data"
"$bin" --data "$data" init >/dev/null
"$bin" --data "$data" party add lic --name Licensor --role licensor >/dev/null
for m in m-8b m-70b m-405b; do "$bin" --data "$data" model add "$m" --owner lic >/dev/null; done
for i in $(seq "$agreements"); do
  "$bin" --data "$data" party add "h$i" --name "h$i" --role host >/dev/null
  # One host's exclusivity at a time: the others' agreements leave it out.
  sed -e "s/^id = \"bench-h1\"/id = \"bench-h$i\"/" -e "s/^host = \"h1\"/host = \"h$i\"/" \
    -e "$([ "$i" = 1 ] || echo '/^\[\[exclusivity\]\]/,/^$/d')" "$shared/agreement-h1.toml" >"$work/agreement.toml"
  "$bin" --data "$data" agreement add "$work/agreement.toml" >/dev/null
done
start=$(date +%s)
python3 - "$data/revshare.db" "$agreements" "$months" "$payments" <<'PY'
import hashlib, sqlite3, sys
db, agreements, months, payments = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
c = sqlite3.connect(db)
c.execute("PRAGMA synchronous = OFF")
seq = c.execute("SELECT COALESCE(MAX(seq), 0) FROM journal_entries").fetchone()[0]
periods = sorted({f"{(2026 * 12 + 9 - k) // 12}-{(2026 * 12 + 9 - k) % 12 + 1:02d}" for k in range(months)})
for i in range(1, agreements + 1):
    a = f"bench-h{i}"
    statements, amounts = [], []
    for m, period in enumerate(periods):
        digest = "sha256:" + hashlib.sha256(f"{a}/{period}".encode()).hexdigest()
        statements.append((a, period, 1, "original", 1, digest, b"{}", 1_700_000_000 + m * 2_600_000))
        amounts.append((a, period, 1, "USD", str(100_000 + (i * 7919 + m * 104729) % 900_000)))
    c.executemany("INSERT INTO statements (agreement_id, period, seq, kind, agreement_version, digest, body, finalised_secs) "
                  "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", statements)
    c.executemany("INSERT INTO statement_amounts VALUES (?, ?, ?, ?, ?)", amounts)
    entries, postings, paid = [], [], 0
    for k in range(payments):
        seq += 1
        amount = 10_000 + (i * 31 + k * 977) % 90_000
        paid += amount
        entries.append((seq, f"payment:{a}:wire-{k:06d}", "payment", None, "payment", a))
        postings.append((seq, 0, f"host:h{i}:payable:{a}", "USD", str(amount)))
        postings.append((seq, 1, f"licensor:lic:receivable:{a}", "USD", str(-amount)))
    c.executemany("INSERT INTO journal_entries (seq, reference, kind, reverses, description, agreement_id) VALUES (?, ?, ?, ?, ?, ?)", entries)
    c.executemany("INSERT INTO postings VALUES (?, ?, ?, ?, ?)", postings)
    c.execute("INSERT INTO paid_by_host VALUES (?, ?)", (a, str(paid)))
c.commit()
c.execute("ANALYZE")
c.close()
PY
echo "stored $((agreements * months)) statements and $((agreements * payments)) payments in $(( $(date +%s) - start )) s"
licensor=$("$bin" --data "$data" token create --party lic --role licensor)
host=$("$bin" --data "$data" token create --party h1 --role host)
"$bin" --data "$data" serve --listen 127.0.0.1:0 --rate-limit 0 >"$work/serve.out" 2>"$work/serve.err" &
server=$!
trap 'kill -TERM $server 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q 'listening on' "$work/serve.out" && break; sleep 0.1; done
url=$(grep -o 'http://[0-9.:]*' "$work/serve.out" | head -1)
mid=$((agreements / 2))
cursor=$(python3 -c "import base64,sys;print(base64.urlsafe_b64encode(f'v1:bench-h{sys.argv[1]}\0payment:bench-h{sys.argv[1]}:wire-{int(sys.argv[2]):06d}'.encode()).decode().rstrip('='))" "$mid" "$((payments / 2))")
sync
echo "== the licensor ($agreements agreements)"
"$load" read "$url" "$licensor" "$seconds" 1000 "/v1/statements?limit=100" "/v1/payments?limit=100"
"$load" read "$url" "$licensor" "$seconds" 1000 "/v1/statements?limit=100&from=2026-01&to=2026-06" "/v1/payments?limit=100&cursor=$cursor" "/v1/payments?agreement=bench-h$mid&state=confirmed&limit=100"
echo "== host h1 (one agreement)"
"$load" read "$url" "$host" "$seconds" 1000 "/v1/statements?limit=100" "/v1/payments?limit=100"
