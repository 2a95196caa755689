"""schemathesis hooks for revshare (.ci/schemathesis.sh loads them).

Agreements are posted as TOML text, a media type schemathesis has no serializer for. And the
creates a host may make are drawn either as schemathesis generates them or, as often, as a
realistic request for the world the script seeded (agreement meridian-northwind, its closed
2026-10, a loopback webhook target the server allows): generated identifiers name nothing, so
without these every create would be refused and the stateful phase would never follow a link
from a create's answer to its read and its list."""
import itertools

import hypothesis.strategies as st
import schemathesis

AGREEMENT = "meridian-northwind"
_serial = itertools.count(1)


@schemathesis.serializer("application/toml")
def toml_text(ctx, value):
    return value.encode() if isinstance(value, str) else str(value).encode()


def _payment():
    return {"agreement": AGREEMENT, "amount": "12.34", "reference": f"st-wire-{next(_serial)}"}


def _dispute():
    return {"agreement": AGREEMENT, "period": "2026-10", "amount": "1.00", "reason": "schemathesis: a line to check"}


def _webhook():
    # Port 9 (discard) on loopback: nothing listens, deliveries fail and are retried, harmlessly.
    return {"url": "http://127.0.0.1:9/revshare", "events": ["statement.closed", "payment.recorded"]}


def _contribution():
    n = next(_serial)
    return {
        "agreement": AGREEMENT,
        "contribution": {"id": f"st-c{n}", "party": "northwind", "kind": "maintenance", "date": "2026-10-15",
                         "description": "schemathesis: kept the kernels current"},
    }


REALISTIC = {"/v1/payments": _payment, "/v1/disputes": _dispute, "/v1/webhooks": _webhook, "/v1/contributions": _contribution}


@schemathesis.hook
def flatmap_body(ctx, body):
    operation = ctx.operation
    make = REALISTIC.get(operation.path) if operation.method.upper() == "POST" else None
    if make is None:
        return st.just(body)
    return st.one_of(st.just(body), st.builds(make))
