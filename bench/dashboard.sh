#!/usr/bin/env bash
# Benchmark: the dashboard's pages with RECORDS usage records stored.
# usage: bench/dashboard.sh WORK_DIR [RECORDS_PER_MONTH] [REQUESTS]   (defaults 850000, 200)
# Fills a fresh SQLite store with `revshare demo --serve` (a year of three hosts' usage: 12 ×
# RECORDS_PER_MONTH records, ~10.2M by default, every ended month closed, payments, a dispute),
# then signs in as the licensor (three agreements) and as a host (one) and asks for each page
# REQUESTS times, one at a time on one kept-alive connection, reporting p50, p99 and the
# largest page weight (goals: p99 < 50 ms, a page < 200 KB). Needs nothing beside the clone.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=${1:?usage: bench/dashboard.sh WORK_DIR [RECORDS_PER_MONTH] [REQUESTS]}
per_month=${2:-850000}
requests=${3:-200}
(cd "$root" && cargo build --release --locked -p revshare-cli >/dev/null)
bin="$root/target/release/revshare"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u +%Y-%m-%d)"
rm -rf "$work" && mkdir -p "$work"
port=$((20000 + RANDOM % 10000))
start=$(date +%s)
"$bin" demo --serve --records "$per_month" --dir "$work/data" --listen "$port" > "$work/demo.out" 2> "$work/demo.err" &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
until grep -q "listening on" "$work/demo.out" 2>/dev/null; do
  kill -0 $server 2>/dev/null || { cat "$work/demo.err" >&2; exit 1; }
  sleep 1
done
echo "store filled and served in $(( $(date +%s) - start )) s"
python3 - "$port" "$work/demo.out" "$requests" <<'PY'
import http.client, re, sys, time, urllib.parse
port, out, n = int(sys.argv[1]), open(sys.argv[2]).read(), int(sys.argv[3])
tokens = dict(re.findall(r"^\s+(\S+)\s+\S+\s+(rs_\S+)$", out, re.M))

def sign_in(token):
    c = http.client.HTTPConnection("127.0.0.1", port)
    c.request("GET", "/signin"); r = c.getresponse(); body = r.read().decode()
    cookie = r.getheader("set-cookie").split(";")[0]
    csrf = re.search(r'name="csrf" value="([^"]+)"', body).group(1)
    form = urllib.parse.urlencode({"csrf": csrf, "token": token})
    c.request("POST", "/signin", form, {"cookie": cookie, "content-type": "application/x-www-form-urlencoded"})
    r = c.getresponse(); r.read()
    return c, r.getheader("set-cookie").split(";")[0]

pages = ["/", "/statements", "/statements/meridian-northwind/2026-10", "/usage?agreement=meridian-northwind",
         "/usage?agreement=meridian-northwind&from=2026-01&to=2026-12", "/disputes", "/disputes/1", "/payments", "/contributions"]
print(f"{'party':<10} {'page':<62} {'p50 ms':>7} {'p99 ms':>7} {'KB':>6}")
for party in ["meridian", "northwind"]:
    c, cookie = sign_in(tokens[party])
    for page in pages:
        times, size = [], 0
        for _ in range(n):
            t = time.perf_counter()
            c.request("GET", page, headers={"cookie": cookie})
            r = c.getresponse(); body = r.read()
            times.append((time.perf_counter() - t) * 1000)
            assert r.status == 200, (party, page, r.status, body[:300])
            size = max(size, len(body))
        times.sort()
        print(f"{party:<10} {page:<62} {times[len(times)//2]:7.2f} {times[int(len(times)*0.99)-1]:7.2f} {size/1024:6.1f}")
PY
