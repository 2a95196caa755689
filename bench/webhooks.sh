#!/usr/bin/env bash
# Benchmark: webhook delivery latency on loopback. The licensor records EVENTS payments it
# received (each posted at once: a `payment.confirmed` event for the host) at 50 a second; a
# receiver on loopback takes the host's deliveries. Latency is from the payment's answer to the
# delivery's arrival. Goal (issue 30): p99 under 5 s.
# usage: bench/webhooks.sh WORK_DIR [EVENTS]   (default 300)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=${1:?usage: bench/webhooks.sh WORK_DIR [EVENTS]}
n=${2:-300}
(cd "$root" && cargo build --release --locked -p revshare-cli --bin revshare >/dev/null)
bin="$root/target/release/revshare"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(date -u +%Y-%m-%d)"
rm -rf "$work" && mkdir -p "$work"
r() { "$bin" --data "$work/data" "$@"; }
r init >/dev/null
r party add meridian --name Meridian --role licensor >/dev/null
r party add northwind --name Northwind --role host >/dev/null
for m in m-8b m-70b; do r model add "$m" --owner meridian >/dev/null; done
r agreement add "$root/examples/agreement.toml" >/dev/null
host=$(r token create --party northwind --role host 2>/dev/null)
licensor=$(r token create --party meridian --role licensor 2>/dev/null)
"$bin" --data "$work/data" serve --listen 127.0.0.1:0 --rate-limit 0 --webhook-allow loopback >"$work/serve.out" 2>"$work/serve.err" &
server=$!
trap 'kill -TERM "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q 'listening on' "$work/serve.out" && break; sleep 0.1; done
url=$(grep -o 'http://[0-9.:]*' "$work/serve.out" | head -1)
python3 - "$url" "$host" "$licensor" "$n" <<'PY'
import http.server, json, sys, threading, time, urllib.request

url, host, licensor, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
arrived = {}

class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        arrived.setdefault(body["data"]["reference"], time.perf_counter())
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer.request_queue_size = 128
receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
threading.Thread(target=receiver.serve_forever, daemon=True).start()

def post(path, token, body):
    request = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request) as answer:
        return answer.status

hook = {"url": f"http://127.0.0.1:{receiver.server_port}/hook", "events": ["payment.confirmed"]}
assert post("/v1/webhooks", host, hook) == 201
sent = {}
for i in range(n):
    reference = f"bench-{i}"
    post("/v1/payments", licensor, {"agreement": "meridian-northwind", "amount": "1.00", "reference": reference, "from": "host"})
    sent[reference] = time.perf_counter()
    time.sleep(0.02)
deadline = time.perf_counter() + 30
while len(arrived) < n and time.perf_counter() < deadline:
    time.sleep(0.05)
latencies = sorted(arrived[r] - sent[r] for r in sent if r in arrived)
pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000
print(f"webhooks: {len(latencies)}/{n} delivered; latency p50 {pick(0.5):.0f} ms, p99 {pick(0.99):.0f} ms, max {latencies[-1] * 1000:.0f} ms")
receiver.shutdown()
PY
