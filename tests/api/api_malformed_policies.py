"""Malformed requests to the policy routes (plans, quota overrides, top-ups,
events, plan fields of subscribers), for the table in api_malformed.py: each
must be answered with problem+json and change nothing."""

import base64
import json

from api_malformed import Case, SUBS, get, post, put

PLANS = "/api/v1/plans"
GOOD_PLAN = {"cycle": {"kind": "monthly"}, "quota_bytes": 1000}


def body_of(value):
    return value if isinstance(value, (str, bytes)) else json.dumps(value)


def put_plan(name, body, status=422, plan="mal-plan", **kw):
    return Case("plan: " + name, "PUT", f"{PLANS}/{plan}", body_of(body), status, **kw)


def quota(name, body, status=422, sub="mal-1", method="PUT"):
    return Case("quota: " + name, method, f"{SUBS}/{sub}/quota",
                None if body is None else body_of(body), status)


def topup(name, body, status=422, sub="mal-1", headers=None):
    return Case("topup: " + name, "POST", f"{SUBS}/{sub}/topups", body_of(body), status, headers=headers)


def cursor_of(kind, after):
    text = base64.urlsafe_b64encode(json.dumps({"v": 1, "k": kind, "a": after}).encode())
    return text.decode().rstrip("=")


def setup(test):
    """A file plan, an api plan and a keyed top-up the cases below run into."""
    test.db.exec("INSERT INTO plans (name, definition, source, source_file) VALUES ('mal-file', "
                 "'{\"cycle\": {\"kind\": \"monthly\"}}', 'file', '/etc/ctquota/policies/mal-file.toml') "
                 "ON CONFLICT (name) DO NOTHING")
    r = test.admin.request("PUT", PLANS + "/mal-plan", json_body=GOOD_PLAN)
    assert r.status in (200, 201), r
    r = test.admin.post(SUBS + "/mal-1/topups", {"bytes": 10}, headers={"Idempotency-Key": "mal-key"})
    assert r.status in (200, 201), r


def cases(test):
    setup(test)
    tiers_down = dict(GOOD_PLAN, tiers=[{"at_percent": 100, "action": "block"},
                                        {"at_percent": 90, "action": "throttle", "down_bps": 10000,
                                         "up_bps": 10000}])
    return [
        # Plans.
        put_plan("not JSON", "{cycle:", 400),
        put_plan("array body", [GOOD_PLAN]),
        put_plan("missing cycle", {"quota_bytes": 1000}),
        put_plan("unknown field", dict(GOOD_PLAN, colour="blue")),
        put_plan("name differs from the path", dict(GOOD_PLAN, name="other")),
        put_plan("unknown time zone", {"cycle": {"kind": "monthly", "time_zone": "Mars/Olympus"}}),
        put_plan("negative quota", dict(GOOD_PLAN, quota_bytes=-1)),
        put_plan("quota as a string", dict(GOOD_PLAN, quota_bytes="10 GB")),
        put_plan("unknown cycle kind", {"cycle": {"kind": "weekly"}}),
        put_plan("unknown tier action", dict(GOOD_PLAN, tiers=[{"at_percent": 100, "action": "nuke"}])),
        put_plan("tiers not ascending", tiers_down),
        put_plan("free window not a time", dict(GOOD_PLAN, free_windows=[{"start": "25:00", "end": "07:00"}])),
        put_plan("zero_rated host bits", dict(GOOD_PLAN, zero_rated=["198.18.0.1/24"])),
        put_plan("name in the path not a plan name", GOOD_PLAN, plan="Mal%20Plan"),
        put_plan("plan from a file", GOOD_PLAN, 409, plan="mal-file"),
        put_plan("XML content type", "<plan/>", 415, headers={"Content-Type": "application/xml"}),
        Case("plan: query parameter", "PUT", PLANS + "/mal-plan?force=1", json.dumps(GOOD_PLAN), 400),
        get("plan: unknown", PLANS + "/mal-nosuch", 404),
        get("plans: unknown parameter", PLANS + "?limit=5"),
        Case("plans: POST on the collection", "POST", PLANS, json.dumps(GOOD_PLAN), 405),
        Case("plan: DELETE", "DELETE", PLANS + "/mal-plan", None, 405),
        # Plans of subscribers.
        post("subscriber: unknown plan", {"id": "mal-x", "plan": "mal-nosuch"}),
        post("subscriber: plan a number", {"id": "mal-x", "plan": 7}),
        post("subscriber: plan not a name", {"id": "mal-x", "plan": "Home 100G"}),
        put("put: unknown plan", {"plan": "mal-nosuch"}),
        put("put: plan an object", {"addresses": [], "plan": {"name": "mal-plan"}}),
        put("put: empty object", {}),
        get("list: unknown state", SUBS + "?state=asleep"),
        get("list: plan not a name", SUBS + "?plan=Bad%20Name"),
        get("list: state twice", SUBS + "?state=normal&state=blocked"),
        # Quota overrides.
        quota("not JSON", "quota=5", 400),
        quota("negative", {"quota_bytes": -1}),
        quota("a string", {"quota_bytes": "5 GB"}),
        quota("a fraction", {"quota_bytes": 1.5}),
        quota("beyond 1 EB", {"quota_bytes": 10**18 + 1}),
        quota("beyond 64 bits", '{"quota_bytes": 1e30}'),
        quota("null", {"quota_bytes": None}),
        quota("missing", {}),
        quota("unknown field", {"quota_bytes": 5, "cycle": "next"}),
        quota("unknown subscriber", {"quota_bytes": 5}, 404, sub="mal-nosuch"),
        quota("DELETE without an override", None, 404, method="DELETE"),
        quota("POST", {"quota_bytes": 5}, 405, method="POST"),
        # Top-ups.
        topup("zero bytes", {"bytes": 0}),
        topup("negative bytes", {"bytes": -100}),
        topup("bytes a string", {"bytes": "1 GB"}),
        topup("bytes beyond 1 EB", {"bytes": 10**19}),
        topup("missing bytes", {"expires_at": "2030-01-01T00:00:00Z"}),
        topup("expires_at not a time", {"bytes": 5, "expires_at": "tomorrow"}),
        topup("expires_at in the past", {"bytes": 5, "expires_at": "2020-01-01T00:00:00Z"}),
        topup("expires_at without a zone", {"bytes": 5, "expires_at": "2030-01-01T00:00:00"}),
        topup("expires_at a date only", {"bytes": 5, "expires_at": "2030-01-01"}),
        topup("expires_at a number", {"bytes": 5, "expires_at": 1900000000}),
        topup("expires_at past 2199", {"bytes": 5, "expires_at": "2250-01-01T00:00:00Z"}),
        topup("unknown field", {"bytes": 5, "note": "gift"}),
        topup("array body", [{"bytes": 5}]),
        topup("Idempotency-Key too long", {"bytes": 5}, 400, headers={"Idempotency-Key": "k" * 256}),
        topup("Idempotency-Key reused with another body", {"bytes": 11}, headers={"Idempotency-Key": "mal-key"}),
        topup("unknown subscriber", {"bytes": 5}, 404, sub="mal-nosuch"),
        get("topups: garbage cursor", SUBS + "/mal-1/topups?cursor=nope!"),
        get("topups: an events cursor", SUBS + "/mal-1/topups?cursor=" + cursor_of("events", "5")),
        get("topups: cursor with a non-numeric id", SUBS + "/mal-1/topups?cursor=" + cursor_of("topups", "x")),
        get("topups: limit 0", SUBS + "/mal-1/topups?limit=0"),
        # Events.
        get("events: limit too large", SUBS + "/mal-1/events?limit=1001"),
        get("events: unknown parameter", SUBS + "/mal-1/events?kind=state"),
        get("events: a topups cursor", SUBS + "/mal-1/events?cursor=" + cursor_of("topups", "5")),
        get("events: unknown subscriber", SUBS + "/mal-nosuch/events", 404),
        Case("events: DELETE", "DELETE", SUBS + "/mal-1/events", None, 405),
    ]
