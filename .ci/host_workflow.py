"""A host's whole workflow through a client generated from docs/openapi.json by
openapi-python-client (`.ci/python_client.sh` generates it and runs this against `revshare serve`):
agreements, a usage batch and its receipt, an idempotent retry, the usage so far, the preview,
the licensor's close, statements, a payment and its confirmation, a dispute, and a webhook whose
signature is checked as docs/INTEGRATING.md says.

usage: python3 host_workflow.py BASE_URL HOST_TOKEN LICENSOR_TOKEN USAGE_JSONL
"""

import hashlib
import hmac
import http.server
import json
import sys
import threading
import time

import jsonschema
from revshare_client import AuthenticatedClient, Client
from revshare_client.api.agreements import list_agreements
from revshare_client.api.disputes import list_disputes, open_dispute
from revshare_client.api.health import healthz
from revshare_client.api.ledger import confirm_payment, list_payments, post_payment
from revshare_client.api.statements import get_statement, list_statements, post_close, preview_statement
from revshare_client.api.usage import summary
from revshare_client.api.webhooks import list_deliveries, post_webhook
from revshare_client.models import (
    CloseBody,
    ConfirmationBody,
    IngestResult,
    NewWebhookEndpoint,
    OpenDispute,
    PaymentBody,
    Statement,
    UsageRecordSchema,
)

base, host_token, licensor_token, usage_path = sys.argv[1:5]
anonymous = Client(base_url=base)
host = AuthenticatedClient(base_url=base, token=host_token)
licensor = AuthenticatedClient(base_url=base, token=licensor_token)
AGREEMENT, PERIOD = "meridian-northwind", "2026-10"


def check(condition, what):
    if not condition:
        raise SystemExit(f"host workflow: {what}")


check(healthz.sync(client=anonymous).status == "ok", "the server is healthy")
agreements = list_agreements.sync(client=host)
check([a.id for a in agreements.items] == [AGREEMENT], f"the host lists its agreement: {agreements}")

# A usage batch: the records as the generated model writes them, sent as a JSON array. (The
# generated `post_usage` cannot choose between the route's several body types, so the batch goes
# through the client's own httpx session.)
with open(usage_path, encoding="utf-8") as lines:
    records = [UsageRecordSchema.from_dict(json.loads(line)).to_dict() for line in lines if line.strip()]
records = [r for r in records if r["host"] == "northwind"]  # the example file has another host's too
headers = {"Content-Type": "application/json", "Idempotency-Key": "batch-2026-10-1"}
sent = host.get_httpx_client().post("/v1/usage", json=records, headers=headers)
check(sent.status_code == 200, f"the batch is stored: {sent.status_code} {sent.text}")
stored = IngestResult.from_dict(sent.json())
# The example file resends one record: a duplicate, acknowledged and stored once.
check((stored.accepted, stored.duplicates) == (len(records) - 1, 1), f"every record is stored once: {sent.text}")
check(stored.receipt.batch.records == stored.accepted, "the receipt counts the distinct records")
check(stored.receipt.batch.digest.startswith("sha256:"), "the receipt names the batch digest")
again = host.get_httpx_client().post("/v1/usage", json=records, headers=headers)
check(again.headers.get("idempotent-replayed") == "true" and again.content == sent.content, "a retry replays the first answer")

so_far = summary.sync(client=host, agreement=AGREEMENT, from_=PERIOD, to=PERIOD, interval="month")
preview = preview_statement.sync(client=host, agreement=AGREEMENT, period=PERIOD)
check(preview.preview and isinstance(preview.statement, Statement), "the preview holds a typed statement")
check(so_far.items[0].records == preview.statement.inputs.records > 0, f"the usage so far is what the preview bills: {so_far}")

# The licensor closes the month; the host reads the statement it previewed.
closed = post_close.sync_detailed(client=licensor, body=CloseBody(agreement=AGREEMENT, period=PERIOD))
check(closed.status_code == 201, f"the month closes: {closed.status_code} {closed.content!r}")
location = closed.headers["location"]
check(location == f"/v1/statements/{AGREEMENT}/{PERIOD}", f"Location is the statement: {location}")
listed = list_statements.sync(client=host, agreement=AGREEMENT)
check(len(listed.items) == 1 and listed.next_cursor is None, f"one statement listed: {listed}")
statement = get_statement.sync(client=host, agreement=AGREEMENT, period=PERIOD)
check(isinstance(statement, Statement), f"the statement is typed: {statement}")
check(statement.totals.net_payable == preview.statement.totals.net_payable, "the statement is what the preview said")
check(len(statement.lines) == len(preview.statement.lines), "line for line")
document = json.loads(anonymous.get_httpx_client().get("/openapi.json").text)
raw = host.get_httpx_client().get(location).json()
jsonschema.validate(raw, {"$ref": "#/components/schemas/Statement", "components": document["components"]})


# A webhook: a receiver on loopback, told of the dispute the host opens.
received = []


class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        received.append((self.headers, body))  # headers are read without regard to case
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


server = http.server.HTTPServer(("127.0.0.1", 0), Receiver)
threading.Thread(target=server.serve_forever, daemon=True).start()
endpoint = post_webhook.sync_detailed(
    client=host, body=NewWebhookEndpoint(url=f"http://127.0.0.1:{server.server_port}/hook", events=["dispute.opened", "payment.confirmed"])
)
check(endpoint.status_code == 201, f"the endpoint is subscribed: {endpoint.content!r}")
secret = endpoint.parsed.secret
claim = OpenDispute(agreement=AGREEMENT, period=PERIOD, line=0, amount="10.00", reason="our meter says less", evidence=["sha256:ab"])
opened = open_dispute.sync_detailed(client=host, body=claim)
check(opened.status_code == 201, f"the dispute opens: {opened.content!r}")
check(len(list_disputes.sync(client=host, state="open").items) == 1, "one open dispute listed")


def delivered(event_type):
    deadline = time.time() + 10
    while time.time() < deadline:
        for headers, body in received:
            if headers.get("Revshare-Event-Type") == event_type:
                return headers, body
        time.sleep(0.05)
    raise SystemExit(f"host workflow: no {event_type} delivered within 10 s")


headers, body = delivered("dispute.opened")
# The check docs/INTEGRATING.md describes: HMAC-SHA256 of "<t>.<body>" under the secret.
parts = dict(part.split("=", 1) for part in headers["Revshare-Signature"].split(","))
expected = hmac.new(secret.encode(), parts["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
check(hmac.compare_digest(expected, parts["v1"]), "the delivery's signature checks out")
check(abs(time.time() - int(parts["t"])) < 300, "the signature is recent")
check(json.loads(body)["data"]["agreement"] == AGREEMENT, "the event names the agreement")

# A payment: the host records it, the licensor confirms it, the host is told.
paid = post_payment.sync_detailed(client=host, body=PaymentBody(agreement=AGREEMENT, amount="100.00", reference="wire-1"))
check(paid.status_code == 201 and paid.parsed.state == "pending", f"the payment is pending: {paid.content!r}")
check([p.reference for p in list_payments.sync(client=host, state="pending").items] == ["wire-1"], "listed as pending")
confirmed = confirm_payment.sync_detailed(client=licensor, body=ConfirmationBody(agreement=AGREEMENT, reference="wire-1"))
check(confirmed.status_code == 200, f"the licensor confirms it: {confirmed.content!r}")
check([p.state for p in list_payments.sync(client=host).items] == ["confirmed"], "confirmed")
delivered("payment.confirmed")
log = list_deliveries.sync(client=host, id=endpoint.parsed.id)
check(all(d.state == "delivered" for d in log.items) and len(log.items) == 2, f"the delivery log: {log}")
server.shutdown()
print("host workflow: every step passed")
