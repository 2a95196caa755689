#!/usr/bin/env bash
# schemathesis (PyPI) against a real `revshare serve` on a fresh SQLite store, bounded in examples:
# every documented operation, called as a host and as an auditor, must never answer 5xx and every
# response must match the OpenAPI document the server serves; and as the host, the stateful phase
# must follow the document's links from its creates to their reads and lists (hooks:
# .ci/schemathesis_hooks.py).
# usage: .ci/schemathesis.sh REVSHARE_BINARY [MAX_EXAMPLES]
set -euo pipefail
bin=$(realpath "${1:?usage: .ci/schemathesis.sh REVSHARE_BINARY [MAX_EXAMPLES]}")
examples=${2:-25}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
server=""
cleanup() {
  if [ -n "$server" ]; then kill -TERM "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
r() { "$bin" --data "$work/data" "$@"; }
r init >/dev/null
r party add meridian --name Meridian --role licensor >/dev/null
r party add northwind --name Northwind --role host >/dev/null
r party add southwind --name Southwind --role host >/dev/null
r party add audit --name Audit --role auditor >/dev/null
for m in m-8b m-70b; do r model add "$m" --owner meridian >/dev/null; done
r agreement add "$root/examples/agreement.toml" >/dev/null
r ingest "$root/examples/usage.jsonl" >/dev/null
r close --agreement meridian-northwind --period 2026-10 >/dev/null
host=$(r token create --party northwind --role host 2>/dev/null)
auditor=$(r token create --party audit --role auditor 2>/dev/null)
# The binary itself in the background (not the `r` function, whose subshell would take the
# SIGTERM and leave the server running).
"$bin" --data "$work/data" serve --listen 127.0.0.1:0 --rate-limit 0 --webhook-allow loopback >"$work/serve.out" 2>"$work/serve.err" &
server=$!
for _ in $(seq 100); do grep -q 'listening on' "$work/serve.out" && break; sleep 0.1; done
url=$(grep -o 'http://[0-9.:]*' "$work/serve.out" | head -1)
[ -n "$url" ] || { cat "$work/serve.err"; echo "the server did not start" >&2; exit 1; }
cd "$work" # schemathesis keeps a cache in the working directory
export PYTHONPATH="$root/.ci${PYTHONPATH:+:$PYTHONPATH}" SCHEMATHESIS_HOOKS=schemathesis_hooks
for token in "$host" "$auditor"; do
  python3 -m schemathesis.cli run "$url/openapi.json" --url "$url" -H "Authorization: Bearer $token" \
    --max-examples "$examples" --generation-deterministic \
    --checks not_a_server_error,response_schema_conformance,content_type_conformance
done
# The host's creates (payments, disputes, webhooks, contributions) succeed with the hooks'
# realistic requests, and the stateful phase must then follow their links: create → read → list.
# Scenarios are cheap (a few requests each): 200 of them whatever MAX_EXAMPLES says, and
# seeded rather than deterministic (which draws too few to reach most links).
python3 -m schemathesis.cli run "$url/openapi.json" --url "$url" -H "Authorization: Bearer $host" \
  --phases stateful --max-examples 200 --seed 1 \
  --checks not_a_server_error,response_schema_conformance,content_type_conformance | tee "$work/stateful.out"
covered=$(grep -o 'API Links: *[0-9]* covered' "$work/stateful.out" | grep -o '[0-9]*' | head -1)
echo "stateful links followed as the host: ${covered:-none}"
[ "${covered:-0}" -ge 12 ] || { echo "schemathesis followed ${covered:-no} links from the host's creates; expected at least 12 (18 of 28 on 2026-12-07)" >&2; exit 1; }
