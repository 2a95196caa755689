#!/usr/bin/env bash
# A client generated from docs/openapi.json with openapi-python-client (PyPI), used for a host's
# whole workflow (.ci/host_workflow.py) against a real `revshare serve` on a fresh SQLite store.
# usage: .ci/python_client.sh REVSHARE_BINARY
set -euo pipefail
bin=$(realpath "${1:?usage: .ci/python_client.sh REVSHARE_BINARY}")
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
server=""
cleanup() {
  if [ -n "$server" ]; then kill -TERM "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
python3 -c 'import openapi_python_client' 2>/dev/null || python3 -m pip install --quiet openapi-python-client
(cd "$work" && openapi-python-client generate --path "$root/docs/openapi.json" --meta none --output-path revshare_client >generate.log 2>&1) \
  || { cat "$work/generate.log"; echo "openapi-python-client could not generate a client" >&2; exit 1; }
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
for _ in $(seq 100); do grep -q 'listening on' "$work/serve.out" && break; sleep 0.1; done
url=$(grep -o 'http://[0-9.:]*' "$work/serve.out" | head -1)
[ -n "$url" ] || { cat "$work/serve.err"; echo "the server did not start" >&2; exit 1; }
PYTHONPATH="$work" python3 "$root/.ci/host_workflow.py" "$url" "$host" "$licensor" "$root/examples/usage.jsonl" \
  || { tail -n 40 "$work/serve.err"; exit 1; }
