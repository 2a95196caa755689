#!/usr/bin/env python3
"""An independent reading of SPEC §4 (and §11's derived models) for the settlement snapshot cases.

Recomputes every case in tests/cases/ with exact fractions, straight from the SPEC text and
without any code of revshare-core, and compares the result with the accepted snapshot in
tests/snapshots/: selection (each resend counted once), tier volumes, each line (order, sums, amount, flags),
every total and the contribution allocation; expected errors by their kind and content.

    python3 crates/revshare-core/tests/settlement_oracle.py        # exits 1 on any disagreement
"""
import datetime as dt
import json
import pathlib
import re
import sys
import tomllib
from fractions import Fraction as F

HERE = pathlib.Path(__file__).resolve().parent
MINOR = {"USD": 2, "JPY": 0, "BHD": 3, "EUR": 2}
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
TIME = re.compile(r"^(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?([Zz]|[+-]\d\d:\d\d)$")


def instant(value):
    """An instant as integer nanoseconds since the epoch, from TOML or RFC 3339 text."""
    if isinstance(value, dt.datetime):
        return int((value - EPOCH).total_seconds()) * 10**9 + value.microsecond * 1000
    if isinstance(value, dt.date):
        return instant(dt.datetime(value.year, value.month, value.day, tzinfo=dt.timezone.utc))
    if re.fullmatch(r"\d{4}-\d\d-\d\d", value):
        return instant(dt.date.fromisoformat(value))
    m = TIME.match(value)
    assert m, value
    y, mo, d, h, mi, s, frac, off = m.groups()
    base = dt.datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), tzinfo=dt.timezone.utc)
    ns = int((frac or "").ljust(9, "0") or 0)
    offset = 0 if off in "Zz" else (1 if off[0] == "+" else -1) * (int(off[1:3]) * 60 + int(off[4:6]))
    return int((base - EPOCH).total_seconds()) * 10**9 + ns - offset * 60 * 10**9


def month_bounds(period):
    y, m = map(int, period.split("-"))
    ny, nm = (y + 1, 1) if m == 12 else (y, m + 1)
    return instant(dt.date(y, m, 1)), instant(dt.date(ny, nm, 1))


def round_half_even(x, places):
    """x rounded to `places` decimals, half to even, as an integer of minor units."""
    scaled = x * 10**places
    q, r = divmod(scaled.numerator, scaled.denominator)
    twice = 2 * r
    if twice > scaled.denominator or (twice == scaled.denominator and q % 2 == 1):
        q += 1
    return q


def money(minor, places):
    sign = "-" if minor < 0 else ""
    digits = str(abs(minor)).rjust(places + 1, "0")
    return sign + (digits[:-places] + "." + digits[-places:] if places else digits)


def oracle(case):
    a = tomllib.loads((case / "agreement.toml").read_text())
    period = (case / "period.txt").read_text().strip()
    places = MINOR[a["currency"]]
    start, end = month_bounds(period)
    eff_from = instant(a["effective_from"])
    eff_to = instant(a["effective_to"]) if "effective_to" in a else None
    if eff_to is not None and start >= eff_to:
        # SPEC §10: a month after the end is only a final true-up, and these cases carry nothing.
        return {"error": "ended"}
    if not eff_from < end:
        return {"error": "outside"}
    p = a["pricing"]

    # Step 1: distinct records of the host in the month and the effective range.
    seen, selected = {}, []
    for line in (case / "usage.jsonl").read_text().splitlines():
        if not line.strip():
            continue
        r = json.loads(line, parse_float=str, parse_int=str)
        r["revenue"] = F(str(r["revenue"]))
        r["t"] = instant(r["time"])
        for k in ("requests", "input_tokens", "output_tokens"):
            r[k] = int(r[k])
        value = tuple(r[k] for k in ("model", "use_case", "region", "t", "requests", "input_tokens", "output_tokens", "revenue", "currency"))
        ok = r["host"] == a["host"] and start <= r["t"] < end and eff_from <= r["t"] and (eff_to is None or r["t"] < eff_to)
        key = (r["host"], r["id"])
        if key in seen:
            assert seen[key] == value, f"conflict {key}"
            continue
        seen[key] = value
        if ok:
            selected.append(r)

    def metric(r):
        m = p["tier_metric"]
        return r["revenue"] if m == "revenue" else (r["input_tokens"] + r["output_tokens"] if m == "tokens" else F(r[m]))

    # Step 2: tier position.
    bounds = [F(b) for b in p["tier_bounds"]]
    V = sum((F(metric(r)) for r in selected), F(0))
    lows = [F(0)] + bounds
    vols = [max(F(0), min(V - lows[i], bounds[i] - lows[i])) if i < len(bounds) else max(F(0), V - lows[i]) for i in range(len(lows))]
    n = len(lows)
    if p["tier_mode"] == "graduated":
        f = [F(1) if i == 0 else F(0) for i in range(n)] if V == 0 else [v / V for v in vols]
    else:
        j = next((i for i, b in enumerate(bounds) if lows[i] < V <= b), 0 if V == 0 else n - 1)
        f = [F(int(i == j)) for i in range(n)]

    # Step 3: lines. A model the agreement does not list but derives from one it lists (through
    # models.json, at any depth) is priced at the rates for derivatives (DECISIONS: derived models).
    parents = {}
    if (case / "models.json").exists():
        parents = {m["id"]: m["derived_from"] for m in json.loads((case / "models.json").read_text()) if m.get("derived_from")}

    def base_of(model):
        if model in a["models"]:
            return None
        at = parents.get(model)
        while at is not None and at not in a["models"]:
            at = parents.get(at)
        return at

    derivatives = a.get("derivatives")

    def rates_of(r):
        """(rates per tier, factor) for the record's use case and model, or None."""
        uc = r["use_case"]
        base = p["rates"].get(uc, p["rates"].get("default"))
        if derivatives is None or base_of(r["model"]) is None:
            return None if base is None else (base, F(1))
        own = derivatives.get("rates", {})
        if uc in own or "default" in own:
            return own.get(uc, own.get("default")), F(1)
        return None if base is None else (base, F(derivatives.get("rate_factor", "1")))

    missing = {}
    for r in selected:
        if rates_of(r) is None:
            missing[r["use_case"]] = missing.get(r["use_case"], 0) + 1
    if missing:
        return {"error": "no_rate", "missing": missing}
    scopes = a.get("exclusivity", [])

    def restricted(r):
        """SPEC §11: inside a prohibited use case or a [[restrictions]] scope (absent keys: all)."""
        if r["use_case"] in a.get("prohibited_use_cases", []):
            return True
        for x in a.get("restrictions", []):
            if (r["use_case"] in x.get("use_cases", [r["use_case"]]) and r["region"] in x.get("regions", [r["region"]])
                    and r["model"] in x.get("models", [r["model"]])
                    and ("from" not in x or instant(x["from"]) <= r["t"]) and ("to" not in x or r["t"] < instant(x["to"]))):
                return True
        return False

    def scope_of(r):
        for s in scopes:
            if (s["use_case"] == r["use_case"] and instant(s["from"]) <= r["t"] < instant(s["to"])
                    and r["region"] in s.get("regions", [r["region"]]) and r["model"] in s.get("models", [r["model"]])):
                return s
        return None

    unit = F(p["unit"]) if p["basis"] == "per_unit" else F(1)
    lines = {}
    for r in selected:
        s = scope_of(r)
        key = (r["model"], r["use_case"], r["region"], s is not None)
        l = lines.setdefault(key, {"records": 0, "requests": 0, "input_tokens": 0, "output_tokens": 0, "revenue": F(0), "volume": F(0), "exact": F(0), "restricted": False})
        l["restricted"] = l["restricted"] or restricted(r)
        for k in ("requests", "input_tokens", "output_tokens", "revenue"):
            l[k] += r[k]
        l["records"] += 1
        l["volume"] += metric(r)
        base = r["revenue"] if p["basis"] == "revenue_share" else F(metric(r)) / unit
        tier_rates, factor = rates_of(r)
        rate = sum((fi * F(ri) for fi, ri in zip(f, tier_rates)), F(0)) * factor
        l["exact"] += base * rate * (1 + (F(s["uplift"]) if s else 0))
    out_lines = []
    for key in sorted(lines, key=lambda k: (k[0].encode(), k[1].encode(), k[2].encode(), k[3])):
        l = lines[key]
        derived_from = base_of(key[0])
        prefix = (derivatives or {}).get("name_prefix")
        if key[0] not in a["models"] and derived_from is None:
            flags = ["unlicensed_model"]
        elif derived_from is not None and prefix is not None and not key[0].startswith(prefix):
            flags = ["naming_violation"]
        else:
            flags = []
        if l["restricted"]:
            flags.append("prohibited_use")
        out_lines.append({
            "model": key[0], "use_case": key[1], "region": key[2], "exclusive": key[3], "records": l["records"],
            "requests": str(l["requests"]), "input_tokens": str(l["input_tokens"]), "output_tokens": str(l["output_tokens"]),
            "revenue": money(round_half_even(l["revenue"], places), places), "volume": l["volume"],
            "amount": money(round_half_even(l["exact"], places), places),
            "flags": flags, "derived_from": derived_from,
        })

    # Steps 4-6, in minor units.
    subtotal = sum(round_half_even(lines[k]["exact"], places) for k in lines)
    minimum = round_half_even(F(a.get("minimum", "0")), places)
    true_up = max(0, minimum - subtotal)
    cap_red = max(0, subtotal + true_up - round_half_even(F(a["cap"]), places)) if "cap" in a else 0
    total = subtotal + true_up - cap_red
    pool, alloc = 0, {}
    contribs = []
    if (case / "contributions.jsonl").exists():
        contribs = [json.loads(x) for x in (case / "contributions.jsonl").read_text().splitlines() if x.strip()]
    counted = [c for c in contribs if c["accepted"] and start <= instant(c["date"]) < end]
    if counted and "contributions" in a:
        terms = a["contributions"]
        pool = round_half_even(F(terms["pool"]) * F(total, 10**places), places)
        points = {}
        for c in counted:
            points[c["party"]] = points.get(c["party"], 0) + terms["points"][c["kind"]]
        S = sum(points.values())
        shares = {q: F(pool * w, S) for q, w in points.items()}
        alloc = {q: shares[q].numerator // shares[q].denominator for q in points}
        left = pool - sum(alloc.values())
        for q in sorted(points, key=lambda q: (-(shares[q] - alloc[q]), q))[:left]:
            alloc[q] += 1
    host_credit = alloc.get(a["host"], 0)
    gross = round_half_even(sum((r["revenue"] for r in selected), F(0)), places)
    m = lambda x: money(x, places)
    return {
        "inputs": {"records": len(selected)},
        "V": V, "tier_volumes": vols,
        "lines": out_lines,
        "totals": {"gross_revenue": m(gross), "usage_subtotal": m(subtotal), "minimum_true_up": m(true_up), "cap_reduction": m(cap_red),
                   "usage_total": m(total), "contribution_pool": m(pool), "contribution_allocation": {q: m(v) for q, v in sorted(alloc.items())},
                   "host_credit": m(host_credit), "adjustments": m(0), "net_payable": m(total - host_credit)},
        "flags": sorted({fl for l in out_lines for fl in l["flags"]}),
    }


def compare(case, snap_text, want):
    body = snap_text.split("\n---\n", 1)[1].strip()
    problems = []
    if "error" in want:
        if not body.startswith("error: "):
            return [f"expected an error ({want['error']}), snapshot is a statement"]
        if want["error"] == "outside" and "is not in effect" not in body:
            problems.append(f"expected an out-of-range error: {body}")
        if want["error"] == "ended" and "there is nothing to carry" not in body:
            problems.append(f"expected a month after the end with nothing to carry: {body}")
        for uc, count in want.get("missing", {}).items():
            if f"`{uc}` ({count} record{'' if count == 1 else 's'})" not in body:
                problems.append(f"error does not name `{uc}` with {count} records: {body}")
        return problems
    if body.startswith("error: "):
        return [f"unexpected error: {body}"]
    got = json.loads(body)
    if got["inputs"].keys() != {"records", "usage_digest"} or {"records": got["inputs"]["records"]} != want["inputs"]:
        problems.append(f"inputs {got['inputs']} != {want['inputs']}")
    if F(got["tiers"]["volume"]) != want["V"]:
        problems.append(f"V {got['tiers']['volume']} != {want['V']}")
    if [F(t["volume"]) for t in got["tiers"]["tiers"]] != want["tier_volumes"]:
        problems.append(f"tier volumes {[t['volume'] for t in got['tiers']['tiers']]} != {want['tier_volumes']}")
    if len(got["lines"]) != len(want["lines"]):
        problems.append(f"{len(got['lines'])} lines != {len(want['lines'])}")
    for g, w in zip(got["lines"], want["lines"]):
        for k, v in w.items():
            gv = F(g[k]) if k == "volume" else g.get(k)
            if gv != v:
                problems.append(f"line {w['model']}/{w['use_case']}/{w['region']}/{w['exclusive']}: {k} {g.get(k)} != {v}")
    for k, v in want["totals"].items():
        if got["totals"][k] != v:
            problems.append(f"totals.{k} {got['totals'][k]} != {v}")
    if got["flags"] != want["flags"]:
        problems.append(f"flags {got['flags']} != {want['flags']}")
    return problems


def main():
    failed = 0
    cases = sorted(p for p in (HERE / "cases").iterdir() if p.is_dir())
    for case in cases:
        snap = HERE / "snapshots" / f"settlement_cases__settlement_cases@{case.name}__agreement.toml.snap"
        if not snap.exists():
            print(f"{case.name}: no snapshot")
            failed += 1
            continue
        problems = compare(case, snap.read_text(), oracle(case))
        failed += bool(problems)
        print(f"{case.name}: {'ok' if not problems else 'DISAGREES'}")
        for p in problems:
            print(f"    {p}")
    print(f"{len(cases) - failed} of {len(cases)} cases agree with the oracle")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
