"""Load generator for `revshare serve` (bench/serve.sh runs it).

usage: load.py URL USAGE.jsonl TOKENS.json CLIENTS BATCH READ_TOKEN READ_SECONDS READ_RATE

Phase 1: the records of USAGE.jsonl, cut into batches of BATCH lines per host, are posted by
CLIENTS concurrent clients (one keep-alive connection each) as application/x-ndjson, each batch
with its host's token; an answer counts once the server acknowledged it (200 = committed).
Prints records/s over the whole phase and batch latency percentiles.
Phase 2: GET /v1/statements/bench-h1/2026-10 and GET /v1/balances, alternating, at READ_RATE
requests/s for READ_SECONDS seconds (open loop: requests are scheduled on the clock, and latency
counts from the scheduled time, so a slow server cannot hide behind a slower load).
"""
import http.client
import json
import sys
import threading
import time
import urllib.parse
from collections import defaultdict


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))] if values else float("nan")


def main():
    url, usage, tokens_file, clients, batch, read_token, read_seconds, read_rate = sys.argv[1:9]
    clients, batch, read_seconds, read_rate = int(clients), int(batch), float(read_seconds), float(read_rate)
    tokens = json.load(open(tokens_file))
    target = urllib.parse.urlparse(url)
    by_host = defaultdict(list)
    for line in open(usage, "rb"):
        host = json.loads(line)["host"]
        by_host[host].append(line)
    batches = []
    for host, lines in by_host.items():
        for i in range(0, len(lines), batch):
            chunk = lines[i:i + batch]
            batches.append((host, len(chunk), b"".join(chunk)))
    batches.sort(key=lambda b: -b[1])
    lock = threading.Lock()
    latencies, failures, done = [], [], [0]
    cursor = [0]

    def client():
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
        while True:
            with lock:
                if cursor[0] >= len(batches):
                    return
                host, n, body = batches[cursor[0]]
                cursor[0] += 1
            start = time.perf_counter()
            conn.request("POST", "/v1/usage", body, {"Authorization": f"Bearer {tokens[host]}", "Content-Type": "application/x-ndjson"})
            response = conn.getresponse()
            response.read()
            elapsed = time.perf_counter() - start
            with lock:
                if response.status == 200:
                    latencies.append(elapsed)
                    done[0] += n
                else:
                    failures.append(response.status)

    start = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    if latencies:
        print(f"ingest over HTTP: {done[0]} records in {len(latencies)} batches of <= {batch}, {clients} clients: "
              f"{wall:.2f} s, {done[0] / wall:,.0f} records/s; batch latency p50 {percentile(latencies, 50) * 1000:.1f} ms, "
              f"p99 {percentile(latencies, 99) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms; failures {len(failures)}")

    # Phase 2: reads at a fixed rate.
    total = int(read_seconds * read_rate)
    paths = ["/v1/statements/bench-h1/2026-10", "/v1/balances"]
    read_latency = defaultdict(list)
    read_failures = []
    begin = time.perf_counter() + 0.2
    workers = 8
    def reader(k):
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=10)
        for i in range(k, total, workers):
            due = begin + i / read_rate
            now = time.perf_counter()
            if due > now:
                time.sleep(due - now)
            path = paths[i % 2]
            conn.request("GET", path, headers={"Authorization": f"Bearer {read_token}"})
            response = conn.getresponse()
            response.read()
            finished = time.perf_counter()
            with lock:
                if response.status == 200:
                    read_latency[path].append(finished - due)
                else:
                    read_failures.append(response.status)
    threads = [threading.Thread(target=reader, args=(k,)) for k in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    span = max(time.perf_counter() - begin, 1e-9)
    for path in paths if total else []:
        values = read_latency[path]
        print(f"read {path}: {len(values)} requests at {total / span:,.0f} req/s overall; "
              f"p50 {percentile(values, 50) * 1000:.2f} ms, p99 {percentile(values, 99) * 1000:.2f} ms")
    if failures or read_failures:
        print(f"failures: ingest {failures[:5]}, reads {read_failures[:5]}")
        sys.exit(1)


main()
