"""GET /api/v1/nat-lookup through a real HTTP client: flow log rows written
with SQL (a masqueraded UDP connection that ended, a long TCP connection
still open with only interim records, a second subscriber sharing the same
public port toward another server), answers for each role, the filters, and
malformed queries answered with problem+json (400 for unknown parameters,
422 naming every bad field)."""

import urllib.parse

from api_case import ApiTestCase

PATH = "/api/v1/nat-lookup"
COLUMNS = ("gateway_id, flow_end, flow_start, final, start_first_seen, subscriber_id, direction, "
           "l4proto, orig_src, orig_sport, orig_dst, orig_dport, reply_src, reply_sport, reply_dst, "
           "reply_dport, public_address, public_port, orig_bytes, orig_packets, reply_bytes, "
           "reply_packets, conntrack_id, flow_id")


class NatLookup(ApiTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.db.exec("CREATE TABLE IF NOT EXISTS flow_log_p20260315 PARTITION OF flow_log "
                    "FOR VALUES FROM ('2026-03-15 00:00:00+00') TO ('2026-03-16 00:00:00+00')")

    def row(self, sub, start, end, final, src, sport, remote, rport, nat_port, proto=17, flow=1):
        sub_id = f"(SELECT id FROM subscribers WHERE external_id = '{sub}')"
        self.db.exec(
            f"INSERT INTO flow_log ({COLUMNS}) VALUES ('gw-a', '{end}', '{start}', {final}, false, "
            f"{sub_id}, 1, {proto}, '{src}', {sport}, '{remote}', {rport}, '{remote}', {rport}, "
            f"'198.18.0.1', {nat_port}, '198.18.0.1', {nat_port}, 1200, 12, 3400, 10, 99, {flow})")

    def lookup(self, client, at, port=61000, extra=""):
        q = f"?address=198.18.0.1&port={port}&at={urllib.parse.quote(at)}{extra}"
        return client.get(PATH + q)

    def test_lookup(self):
        self.create("nat-alice", "100.64.20.1")
        self.create("nat-bob", "100.64.20.2")
        self.row("nat-alice", "2026-03-15 10:00:00.250+00", "2026-03-15 10:00:30.750+00", "true",
                 "100.64.20.1", 40000, "198.18.0.2", 53, 61000, flow=1)
        self.row("nat-bob", "2026-03-15 10:00:10+00", "2026-03-15 10:00:20+00", "true",
                 "100.64.20.2", 40001, "198.18.0.3", 53, 61000, flow=2)
        for end in ("2026-03-15 11:05:00+00", "2026-03-15 11:10:00+00"):
            self.row("nat-bob", "2026-03-15 11:00:00+00", end, "false", "100.64.20.2", 50000,
                     "198.18.0.4", 443, 62000, proto=6, flow=3)

        for client in (self.billing, self.admin):
            r = self.lookup(client, "2026-03-15T10:00:15Z")
            self.assertEqual(r.status, 200, r)
            body = r.json()
            self.assertEqual((body["address"], body["port"], body["at"]),
                             ("198.18.0.1", 61000, "2026-03-15T10:00:15.000Z"))
            self.assertEqual([i["subscriber_id"] for i in body["items"]], ["nat-alice", "nat-bob"])
        alice = self.lookup(self.billing, "2026-03-15T11:00:00.500+01:00").json()["items"]
        self.assertEqual(alice, [{
            "subscriber_id": "nat-alice", "gateway_id": "gw-a", "protocol": 17,
            "start": "2026-03-15T10:00:00.250Z", "start_is_first_seen": False,
            "end": "2026-03-15T10:00:30.750Z", "last_seen": "2026-03-15T10:00:30.750Z",
            "original": {"src": "100.64.20.1", "src_port": 40000, "dst": "198.18.0.2", "dst_port": 53},
            "reply": {"src": "198.18.0.2", "src_port": 53, "dst": "198.18.0.1", "dst_port": 61000},
            "orig_bytes": 1200, "orig_packets": 12, "reply_bytes": 3400, "reply_packets": 10,
            "conntrack_id": 99}])
        narrowed = self.lookup(self.billing, "2026-03-15T10:00:15Z",
                               extra="&remote_address=198.18.0.3&remote_port=53&protocol=udp")
        self.assertEqual([i["subscriber_id"] for i in narrowed.json()["items"]], ["nat-bob"])
        self.assertEqual(self.lookup(self.billing, "2026-03-15T10:00:15Z",
                                     extra="&protocol=tcp").json()["items"], [])
        # Open at its last record: found, no end, the latest interim record's counters.
        open_ = self.lookup(self.billing, "2026-03-15T11:07:00Z", port=62000).json()["items"]
        self.assertEqual(len(open_), 1)
        self.assertIsNone(open_[0]["end"])
        self.assertEqual(open_[0]["last_seen"], "2026-03-15T11:10:00.000Z")
        # Nobody: a port nobody used, a time nobody held it, limit.
        self.assertEqual(self.lookup(self.billing, "2026-03-15T10:00:15Z", port=61001).json()["items"], [])
        self.assertEqual(self.lookup(self.billing, "2026-03-15T09:59:59Z").json()["items"], [])
        self.assertEqual(len(self.lookup(self.billing, "2026-03-15T10:00:15Z",
                                         extra="&limit=1").json()["items"]), 1)

    def test_tokens_and_malformed_queries(self):
        self.assertProblem(self.lookup(self.anon, "2026-03-15T10:00:15Z"), 401)
        cases = [
            ("", 422, {"address", "port", "at"}),
            ("?address=198.18.0.1&port=61000", 422, {"at"}),
            ("?address=nope&port=70000&at=2026-03-15T10:00:15Z", 422, {"address", "port"}),
            ("?address=198.18.0.1&port=-1&at=yesterday", 422, {"port", "at"}),
            ("?address=198.18.0.1&port=1&at=2026-03-15T10:00:15", 422, {"at"}),  # no zone
            ("?address=198.18.0.1&port=1&at=2026-03-15T10:00:15Z&protocol=sctp!", 422, {"protocol"}),
            ("?address=198.18.0.1&port=1&at=2026-03-15T10:00:15Z&remote_address=1.2.3&remote_port=x",
             422, {"remote_address", "remote_port"}),
            ("?address=198.18.0.1&port=1&at=2026-03-15T10:00:15Z&surprise=1", 400, None),
            ("?address=198.18.0.1&address=198.18.0.2&port=1&at=2026-03-15T10:00:15Z", 400, None),
            ("?address=198.18.0.1&port=1&at=2026-03-15T10:00:15Z&limit=0", 400, None),
        ]
        before = self.db.fingerprint()
        for query, status, fields in cases:
            with self.subTest(query=query):
                body = self.assertProblem(self.billing.get(PATH + query), status)
                if fields is not None:
                    self.assertEqual({e["field"] for e in body["errors"]}, fields, body)
        self.assertEqual(self.db.fingerprint(), before)
