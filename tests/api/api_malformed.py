"""The malformed-request table: each row a description, a request and the
status it must get. Every answer must be problem+json and change nothing."""

import base64
import json

SUBS = "/api/v1/subscribers"


class Case:
    def __init__(self, name, method, path, body=None, status=400, headers=None, raw=False,
                 chunked=False, expect_headers=(), expect_body=None):
        self.name, self.method, self.path, self.status = name, method, path, status
        self.expect_body = expect_body or {}  # members the problem body must have
        self.body = body.encode() if isinstance(body, str) else body
        self.req_headers = headers or {}
        self.raw, self.chunked = raw, chunked
        self.headers = expect_headers

    def send(self, client):
        if self.raw or self.chunked:
            return client.raw(self.method, self.path, body=self.body, headers=self.req_headers,
                              chunked=self.chunked)
        headers = dict(self.req_headers)
        if self.body is not None:
            headers.setdefault("Content-Type", "application/json")
        return client.request(self.method, self.path, body=self.body, headers=headers)


def post(name, body, status=422, **kw):
    if not isinstance(body, (str, bytes)):
        body = json.dumps(body)
    return Case(name, "POST", SUBS, body, status, **kw)


def get(name, path, status=400, **kw):
    return Case(name, "GET", path, None, status, **kw)


def bind(name, body, status=422, sub="mal-1", **kw):
    if not isinstance(body, (str, bytes)):
        body = json.dumps(body)
    return Case(name, "POST", f"{SUBS}/{sub}/addresses", body, status, **kw)


def put(name, body, status=422, sub="mal-1", **kw):
    if not isinstance(body, (str, bytes)):
        body = json.dumps(body)
    return Case(name, "PUT", f"{SUBS}/{sub}", body, status, **kw)


def series(name, query, status=400, sub="mal-1"):
    return get(name, f"{SUBS}/{sub}/usage{query}", status)


def foreign_cursor():
    # (kinds the API knows: subscribers, usage, events, topups)
    text = base64.urlsafe_b64encode(json.dumps({"v": 1, "k": "elsewhere", "a": "x"}).encode())
    return text.decode().rstrip("=")


def cases(test):
    import api_malformed_policies  # noqa: F401 (imports Case and the builders from here)
    usage_cursor = test.billing.get("/api/v1/usage?limit=1").json()["next_cursor"]
    assert usage_cursor, "the malformed table needs two subscribers with usage rows"
    deep = "[" * 200000 + "]" * 200000
    return [
        # Bodies that are not JSON: 400.
        post("truncated JSON", '{"id":', 400),
        post("not JSON at all", "not json", 400),
        post("empty body", "", 400),
        post("trailing garbage", '{"id": "mal-x"} x', 400),
        post("invalid UTF-8", b'{"id": "\xff\xfe"}', 400),
        post("single quotes", "{'id': 'mal-x'}", 400),
        post("comment in JSON", '{"id": "mal-x" /* hi */}', 400),
        # JSON, but not the object we need: 422.
        post("array body", []),
        post("string body", "\"mal-x\""),
        post("null body", "null"),
        post("deeply nested arrays", deep),
        post("missing id", {}),
        post("id is a number", {"id": 5}),
        post("id is null", {"id": None}),
        post("id is an object", {"id": {"x": 1}}),
        post("empty id", {"id": ""}),
        post("id too long", {"id": "x" * 201}),
        post("id with a control character", {"id": "a\u0001b"}),
        post("id with NUL", {"id": "a\u0000b"}),
        post("unknown field", {"id": "mal-x", "plan": "home"}),
        post("field with wrong case", {"id": "mal-x", "Addresses": []}),
        post("addresses not an array", {"id": "mal-x", "addresses": "100.64.6.1"}),
        post("address is a number", {"id": "mal-x", "addresses": [1]}),
        post("address is null", {"id": "mal-x", "addresses": [None]}),
        post("IPv4 octet out of range", {"id": "mal-x", "addresses": ["100.64.6.256"]}),
        post("IPv4 prefix too long", {"id": "mal-x", "addresses": ["100.64.6.0/33"]}),
        post("IPv6 prefix too long", {"id": "mal-x", "addresses": ["2001:db8::/129"]}),
        post("negative prefix", {"id": "mal-x", "addresses": ["100.64.6.0/-1"]}),
        post("host bits set", {"id": "mal-x", "addresses": ["100.64.6.5/24"]}),
        post("address with NUL", {"id": "mal-x", "addresses": ["100.64.6.1\u0000"]}),
        post("address with spaces", {"id": "mal-x", "addresses": [" 100.64.6.1"]}),
        post("host name as address", {"id": "mal-x", "addresses": ["example.com"]}),
        post("duplicate addresses", {"id": "mal-x", "addresses": ["100.64.6.1", "100.64.6.1/32"]}),
        post("number beyond double range", '{"id": "mal-x", "addresses": [1e999]}', 400),
        # Transport-level problems with the body.
        post("body over max_body_bytes", b'{"id": "' + b"x" * (2 << 20) + b'"}', 413),
        Case("chunked body over max_body_bytes", "POST", SUBS, b" " * (2 << 20), 413, chunked=True),
        post("multipart form", b"--b\r\n\r\nx\r\n--b--\r\n", 415,
             headers={"Content-Type": "multipart/form-data; boundary=b"}),
        post("XML content type", "<id>mal-x</id>", 415, headers={"Content-Type": "application/xml"}),
        post("conflict: existing id", {"id": "mal-1"}, 409),
        post("conflict: address of another", {"id": "mal-x", "addresses": ["100.64.5.1"]}, 409),
        # Binding rules ([subscribers] of the test config: the pools 100.64.0.0/10 and
        # 2001:db8::/32, the defaults /24 and /48): 422 naming the limit, 409 the holder.
        post("binding outside the pools", {"id": "mal-x", "addresses": ["192.0.2.1"]},
             expect_body={"address": "192.0.2.1/32"}),
        post("binding shorter than /24", {"id": "mal-x", "addresses": ["100.64.0.0/23"]},
             expect_body={"address": "100.64.0.0/23"}),
        post("binding the whole pool", {"id": "mal-x", "addresses": ["100.64.0.0/10"]}),
        post("binding everything", {"id": "mal-x", "addresses": ["0.0.0.0/0"]}),
        post("IPv6 binding shorter than /48", {"id": "mal-x", "addresses": ["2001:db8::/47"]}),
        post("IPv6 binding outside the pools", {"id": "mal-x", "addresses": ["2001:db9::/48"]}),
        post("conflict: prefix around another's address", {"id": "mal-x", "addresses": ["100.64.5.0/24"]},
             409, expect_body={"conflict": {"address": "100.64.5.0/24", "held_by": "mal-1",
                                            "held_address": "100.64.5.1/32"}}),
        post("conflict: nested addresses in one request",
             {"id": "mal-x", "addresses": ["100.64.6.0/24", "100.64.6.9"]}, 409,
             expect_body={"conflict": {"address": "100.64.6.9/32", "held_by": None,
                                       "held_address": "100.64.6.0/24"}}),
        Case("query parameter on POST", "POST", SUBS + "?dry_run=1", json.dumps({"id": "mal-x"}), 400),
        # Query parameters.
        get("negative limit", SUBS + "?limit=-1"),
        get("zero limit", SUBS + "?limit=0"),
        get("limit not a number", SUBS + "?limit=abc"),
        get("limit too large", SUBS + "?limit=1001"),
        get("limit with a fraction", "/api/v1/usage?limit=1.5"),
        get("limit twice", SUBS + "?limit=1&limit=2"),
        get("unknown parameter", SUBS + "?sort=id"),
        get("garbage cursor", SUBS + "?cursor=garbage!"),
        get("cursor of another listing kind", SUBS + "?cursor=" + foreign_cursor()),
        get("usage cursor on subscribers", SUBS + "?cursor=" + usage_cursor),
        get("q not UTF-8", SUBS + "?q=%FF"),
        get("q with a control character", SUBS + "?q=a%01"),
        get("cycle month 13", "/api/v1/usage?cycle=2024-13-01"),
        get("cycle 30 February", "/api/v1/usage?cycle=2024-02-30"),
        get("cycle as a word", "/api/v1/usage?cycle=yesterday"),
        get("cycle with time", "/api/v1/usage?cycle=2024-05-01T00:00:00Z"),
        # Paths and methods.
        Case("PATCH on the collection", "PATCH", SUBS, None, 405, expect_headers=("allow",)),
        Case("PATCH on a subscriber", "PATCH", SUBS + "/mal-1", json.dumps({"id": "mal-1"}), 405,
             expect_headers=("allow",)),
        Case("POST on a subscriber", "POST", SUBS + "/mal-1", json.dumps({"id": "mal-1"}), 405),
        Case("DELETE on the collection", "DELETE", SUBS, None, 405),
        Case("POST on /healthz", "POST", "/healthz", "{}", 405),
        Case("TRACE", "TRACE", "/healthz", None, 405, raw=True),
        get("unknown API version", "/api/v2/subscribers", 404),
        get("empty id (trailing slash)", SUBS + "/", 404),
        get("broken percent-escape", SUBS + "/%ZZ", 400, raw=True),
        get("id with NUL", SUBS + "/a%00b", 404),
        get("id not UTF-8", SUBS + "/%FF", 404),
        Case("DELETE of an unknown subscriber", "DELETE", SUBS + "/mal-nosuch", None, 404),
        Case("DELETE with a query parameter", "DELETE", SUBS + "/mal-1?force=1", None, 400),
            # The usage series.
        series("series: granularity week", "?granularity=week"),
        series("series: from not a date", "?from=last-week"),
        series("series: time without a zone", "?from=2024-05-01T12:00:00"),
        series("series: from twice", "?from=2024-05-01&from=2024-05-02"),
        series("series: unknown parameter", "?limit=10"),
        series("series: year 9999", "?to=9999-12-31T00:00:00Z"),
        get("cycle in year 3000", "/api/v1/usage?cycle=3000-01-01"),
        series("series: from after to", "?from=2024-05-02&to=2024-05-01", 422),
        series("series: too many points", "?granularity=hour&from=2020-01-01&to=2024-01-01", 422),
        series("series: unknown subscriber", "", 404, sub="mal-nosuch"),
        # Binding single addresses.
        bind("bind: not JSON", "address=100.64.5.9", 400),
        bind("bind: empty body", "", 400),
        bind("bind: array body", ["100.64.5.9"]),
        bind("bind: missing address", {}),
        bind("bind: address is a number", {"address": 1684276489}),
        bind("bind: not a CIDR", {"address": "100.64.5.9/40"}),
        bind("bind: host bits set", {"address": "100.64.5.9/24"}),
        bind("bind: valid_from not a time", {"address": "100.64.5.9", "valid_from": "now"}),
        bind("bind: valid_from a number", {"address": "100.64.5.9", "valid_from": 1714564800}),
        bind("bind: valid_from without a zone", {"address": "100.64.5.9", "valid_from": "2024-05-01T12:00:00"}),
        bind("bind: unknown field", {"address": "100.64.5.9", "valid_until": "2030-01-01"}),
        bind("bind: addresses instead of address", {"addresses": ["100.64.5.9"]}),
        bind("bind: XML content type", "<address/>", 415, headers={"Content-Type": "application/xml"}),
        bind("bind: another's address", {"address": "100.64.5.1"}, 409, sub="mal-2"),
        bind("bind: outside the pools", {"address": "198.18.0.1"}, expect_body={"address": "198.18.0.1/32"}),
        bind("bind: shorter than the minimum", {"address": "100.64.0.0/16"}),
        bind("bind: around another's address", {"address": "100.64.5.0/28"}, 409, sub="mal-2",
             expect_body={"conflict": {"address": "100.64.5.0/28", "held_by": "mal-1",
                                       "held_address": "100.64.5.1/32"}}),
        bind("bind: unknown subscriber", {"address": "100.64.5.9"}, 404, sub="mal-nosuch"),
        Case("bind: query parameter", "POST", SUBS + "/mal-1/addresses?force=1",
             json.dumps({"address": "100.64.5.9"}), 400),
        # Releasing them.
        Case("release: not bound", "DELETE", SUBS + "/mal-1/addresses/100.64.5.9%2F32", None, 404),
        Case("release: another's address", "DELETE", SUBS + "/mal-2/addresses/100.64.5.1%2F32", None, 404),
        Case("release: not a CIDR", "DELETE", SUBS + "/mal-1/addresses/example.com", None, 404),
        Case("release: unknown subscriber", "DELETE", SUBS + "/mal-nosuch/addresses/100.64.5.1", None, 404),
        Case("release: broken escape", "DELETE", SUBS + "/mal-1/addresses/100.64.5.1%2", None, 400, raw=True),
        Case("GET on the addresses collection", "GET", SUBS + "/mal-1/addresses", None, 405,
             expect_headers=("allow",)),
        # Replacing the set.
        put("put: not JSON", "{addresses: []}", 400),
        put("put: missing addresses", {"id": "mal-1"}),
        put("put: plan that does not exist", {"addresses": [], "plan": "home-100g-nosuch"}),
        put("put: id change", {"id": "mal-other", "addresses": []}),
        put("put: unknown field", {"addresses": [], "state": "blocked"}),
        put("put: bad CIDR", {"addresses": ["100.64.5.300"]}),
        put("put: duplicate addresses", {"addresses": ["100.64.5.9", "100.64.5.9/32"]}),
        put("put: another's address", {"addresses": ["100.64.5.1"]}, 409, sub="mal-2"),
        put("put: outside the pools", {"addresses": ["2001:db9::1"]}, sub="mal-2"),
        put("put: around another's address", {"addresses": ["100.64.5.0/25"]}, 409, sub="mal-2",
            expect_body={"conflict": {"address": "100.64.5.0/25", "held_by": "mal-1",
                                      "held_address": "100.64.5.1/32"}}),
        put("put: nested within the request", {"addresses": ["100.64.7.0/24", "100.64.7.1"]}, 409,
            sub="mal-2"),
        put("put: unknown subscriber", {"addresses": []}, 404, sub="mal-nosuch"),
        Case("PUT on the collection", "PUT", SUBS, json.dumps({"addresses": []}), 405),
    ] + api_malformed_policies.cases(test)
