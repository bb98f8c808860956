"""The malformed-request table: each row a description, a request and the
status it must get. Every answer must be problem+json and change nothing."""

import base64
import json

SUBS = "/api/v1/subscribers"


class Case:
    def __init__(self, name, method, path, body=None, status=400, headers=None, raw=False,
                 chunked=False, expect_headers=()):
        self.name, self.method, self.path, self.status = name, method, path, status
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


def foreign_cursor():
    text = base64.urlsafe_b64encode(json.dumps({"v": 1, "k": "elsewhere", "a": "x"}).encode())
    return text.decode().rstrip("=")


def cases(test):
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
        Case("PUT on a subscriber", "PUT", SUBS + "/mal-1", json.dumps({"id": "mal-1"}), 405,
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
    ]
