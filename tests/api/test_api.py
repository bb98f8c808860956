#!/usr/bin/env python3
"""The REST API against a real ctquotad and a real PostgreSQL, through a real
HTTP client: every route (usage series and address bindings in
api_bindings.py; the OpenAPI document against the routes served), the
auth/role matrix, a table of malformed requests (each answered with a
problem+json body and changing nothing), pagination that neither skips nor
repeats while rows are inserted, CSV = JSON export, a database outage
answered with 503 (never 500), and a clean stop on SIGTERM.

Run as root with CTQUOTA_TEST_DB_URL and CTQUOTA_BIN set (CTest does both).
The outer process builds the world (api_harness.ApiWorld) and runs this same
file with --inside in the daemon's network namespace.
"""

import base64
import csv
import datetime
import http.client
import io
import json
import os
import re
import subprocess
import sys
import threading
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from api_harness import API_PORT, ApiWorld, Client, sh, wait_for  # noqa: E402
from api_case import SUBS, ApiTestCase, env  # noqa: E402
import api_bindings  # noqa: E402
import api_export  # noqa: E402
import api_policies  # noqa: E402
import api_malformed  # noqa: E402
import api_nat_lookup  # noqa: E402

class Health(ApiTestCase):
    def test_healthz_readyz_metrics_need_no_token(self):
        r = self.anon.get("/healthz")
        self.assertEqual((r.status, r.json()), (200, {"status": "ok"}))
        r = wait_for(lambda: (lambda x: x if x.status == 200 else None)(self.anon.get("/readyz")),
                     timeout=15, what="/readyz to answer 200")
        self.assertEqual(r.json()["checks"], {"database": "ok", "conntrack_reader": "running"})
        self.anon.get("/api/v1/nosuch")
        r = self.anon.get("/metrics")
        self.assertEqual(r.status, 200)
        self.assertTrue(r.content_type.startswith("text/plain"), r)
        text = r.body.decode()
        for needle in ('ctquota_http_requests_total{route="/healthz",code="200"}',
                       'ctquota_http_requests_total{route="unmatched",code="404"}',
                       'ctquota_http_request_seconds_bucket{route="/readyz",le="+Inf"}',
                       "ctquota_events_read_total", "ctquota_flush_seconds_count",
                       "ctquota_reader_running 1"):
            self.assertIn(needle, text)

    def test_openapi_document_lists_served_routes(self):
        r = self.anon.get("/api/v1/openapi.json")
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.content_type.startswith("application/json"), r)
        doc = r.json()
        self.assertTrue(doc["openapi"].startswith("3.1."))
        operations = [(m.upper(), p) for p, item in doc["paths"].items() for m in item if m != "parameters"]
        self.assertEqual(len(operations), 23)
        for method, path in operations:  # served: no token gets 401 (or 200/503 when public), never 404/405
            with self.subTest(method=method, path=path):
                concrete = (path.replace("{id}", "openapi-x").replace("{cidr}", "100.64.99.1%2F32")
                            .replace("{name}", "openapi-x"))
                status = self.anon.request(method, concrete, body=b"{}" if method in ("POST", "PUT") else None).status
                self.assertIn(status, (200, 401, 503))

    def test_head_answers_like_get_without_a_body(self):
        r = self.anon.request("HEAD", "/healthz")
        self.assertEqual((r.status, r.body), (200, b""))


class Auth(ApiTestCase):
    def test_role_matrix(self):
        self.create("auth-read", "100.64.9.1")
        bad_tokens = {
            "missing": "",
            "unknown": "ctq_" + base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("="),
            "garbage": "not-a-token",
            "basic scheme": None,
        }
        reads = [("GET", SUBS), ("GET", SUBS + "/auth-read"), ("GET", "/api/v1/usage")]
        for name, token in bad_tokens.items():
            for method, path in reads + [("POST", SUBS), ("DELETE", SUBS + "/auth-read")]:
                with self.subTest(credential=name, method=method, path=path):
                    headers = {"Authorization": "Basic YWRtaW46YWRtaW4="} if token is None else None
                    client = Client(token) if token else self.anon
                    body = json.dumps({"id": "auth-never"}).encode() if method == "POST" else None
                    r = client.request(method, path, body=body, headers=headers)
                    self.assertProblem(r, 401)
                    self.assertEqual(r.headers.get("www-authenticate"), 'Bearer realm="ctquota"')
        for client, name in ((self.billing, "billing"), (self.admin, "admin")):
            for method, path in reads:
                with self.subTest(role=name, path=path):
                    self.assertEqual(client.request(method, path).status, 200)
        before = self.db.fingerprint()
        self.assertProblem(self.billing.post(SUBS, {"id": "auth-billing"}), 403)
        self.assertProblem(self.billing.delete(SUBS + "/auth-read"), 403)
        self.assertEqual(self.db.fingerprint(), before)
        self.assertEqual(self.admin.post(SUBS, {"id": "auth-admin"}).status, 201)
        self.assertEqual(self.admin.delete(SUBS + "/auth-admin").status, 204)

    def test_repeated_401s_are_logged_at_a_limited_rate(self):
        """1000 bad tokens from one address: a few warnings naming it, every 401 accounted for."""
        address = "127.0.0.77"  # only this test connects from it
        log_path = os.path.join(os.path.dirname(env("CTQAPI_CONFIG")), "ctquotad.log")
        start = os.path.getsize(log_path)
        bad = "ctq_" + "A" * 43
        conn = http.client.HTTPConnection("127.0.0.1", API_PORT, timeout=30, source_address=(address, 0))

        def refused():
            conn.request("GET", SUBS, headers={"Authorization": f"Bearer {bad}"})
            r = conn.getresponse()
            r.read()
            self.assertEqual(r.status, 401)

        def new_lines():
            with open(log_path) as f:
                f.seek(start)
                return f.read().splitlines()

        began = time.monotonic()
        for _ in range(1000):
            refused()
        burst = time.monotonic() - began
        sent = 1000

        def counted():
            naming = [line for line in new_lines() if address in line]
            firsts = [line for line in naming if f"api: 401 for {address} on GET {SUBS}: " in line]
            summaries = [int(m.group(1)) for line in naming
                         for m in [re.search(rf"api: (\d+) more 401s from {re.escape(address)}", line)]
                         if m]
            return naming, firsts, summaries

        # A burst may span several intervals (slow sanitized builds do): once
        # the interval (1 s) is over, one more 401 closes the open one, so
        # that every 401 sent is in a line.
        time.sleep(1.1)  # the limiter's interval, not a synchronisation
        refused()
        sent += 1
        wait_for(lambda: len(counted()[1]) + sum(counted()[2]) >= sent, timeout=10,
                 what="the summaries of the 401s")
        conn.close()
        naming, firsts, summaries = counted()
        self.assertTrue(all(" warning " in line for line in naming), naming)
        self.assertEqual(len(firsts) + sum(summaries), sent, naming)
        # One first line and at most one summary per interval (1 s) begun.
        self.assertLessEqual(len(naming), 2 * (int(burst + (time.monotonic() - began)) + 2), naming)
        self.assertLess(len(naming), 40, naming)
        # The request lines of 401s are debug lines only.
        self.assertFalse([line for line in new_lines() if " info http GET " in line and " 401 " in line])
        print(f"\n  1000+ bad tokens in {burst:.2f}s: {len(naming)} log lines name {address}",
              file=sys.stderr)

    def test_revoked_token_is_refused(self):
        token = sh([env("CTQUOTA_BIN"), "--config", env("CTQAPI_CONFIG"), "token", "create",
                    "--role", "admin", "--name", "short-lived"]).stdout.strip()
        self.assertRegex(token, r"^ctq_[A-Za-z0-9_-]{43}$")
        token_id = self.db.query("SELECT max(id) FROM api_tokens")[0][0]
        sh([env("CTQUOTA_BIN"), "--config", env("CTQAPI_CONFIG"), "token", "revoke", token_id])
        self.assertProblem(Client(token).get(SUBS), 401)
        stored = self.db.query(f"SELECT encode(token_sha256, 'hex') FROM api_tokens WHERE id = {token_id}")
        self.assertNotIn(token, stored[0][0])  # only the hash is stored


class Subscribers(ApiTestCase):
    def test_create_read_remove(self):
        r = self.admin.post(SUBS, {"id": "crud-1", "addresses": ["100.64.1.1", "2001:db8:1::/56"]})
        self.assertEqual(r.status, 201, r)
        self.assertEqual(r.headers["location"], SUBS + "/crud-1")
        body = r.json()
        self.assertEqual(body["addresses"], ["100.64.1.1/32", "2001:db8:1::/56"])
        self.assertEqual(body["state"], {"state": "normal", "since": body["created_at"], "down_bps": None,
                                         "up_bps": None, "reason": body["state"]["reason"]})
        self.assertEqual((body["plan"], body["quota_bytes"], body["remaining_bytes"], body["counted_bytes"]),
                         (None, None, None, 0))
        self.assertEqual(body["cycle_start"], self.month_start().isoformat() + "T00:00:00Z")
        self.assertEqual(body["cycle_end"], self.month_start(1).isoformat() + "T00:00:00Z")
        self.assertEqual(self.billing.get(SUBS + "/crud-1").json(), body)
        self.assertEqual(self.admin.delete(SUBS + "/crud-1").status, 204)
        self.assertProblem(self.admin.get(SUBS + "/crud-1"), 404)
        self.assertProblem(self.admin.delete(SUBS + "/crud-1"), 404)
        # A removed subscriber may come back (its history is kept).
        self.assertEqual(self.admin.post(SUBS, {"id": "crud-1", "addresses": ["100.64.1.1"]}).status, 201)

    def test_current_usage_is_summed_over_gateways(self):
        self.create("usage-1", "100.64.2.1")
        self.add_usage("usage-1", "gw-a", 1000, 5000, 10, 50)
        self.add_usage("usage-1", "gw-b", 1, 2, 3, 4)
        self.add_usage("usage-1", "gw-a", 7777, 7777, 7, 7, month=-1)  # another cycle
        body = self.billing.get(SUBS + "/usage-1").json()
        self.assertEqual((body["up_bytes"], body["down_bytes"], body["up_packets"], body["down_packets"]),
                         (1001, 5002, 13, 54))
        self.assertRegex(body["updated_at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")

    def test_conflicts_change_nothing(self):
        self.create("conflict-1", "100.64.3.0/24")
        before = self.db.fingerprint()
        self.assertProblem(self.admin.post(SUBS, {"id": "conflict-1"}), 409)
        body = self.assertProblem(self.admin.post(SUBS, {"id": "conflict-2", "addresses": ["100.64.3.0/24"]}), 409)
        self.assertIn("conflict-1", body["detail"])
        self.assertEqual(self.db.fingerprint(), before)
        self.assertProblem(self.admin.get(SUBS + "/conflict-2"), 404)
        # A prefix inside another subscriber's is a conflict too: blocking the wider one
        # would cut the other off.
        body = self.assertProblem(self.admin.post(SUBS, {"id": "conflict-3", "addresses": ["100.64.3.7"]}), 409)
        self.assertEqual(body["conflict"], {"address": "100.64.3.7/32", "held_by": "conflict-1",
                                            "held_address": "100.64.3.0/24"})
        self.assertEqual(self.db.fingerprint(), before)

    def test_ids_with_reserved_characters(self):
        sub_id = "acme/ä 1?x=%"
        r = self.admin.post(SUBS, {"id": sub_id})
        self.assertEqual(r.status, 201, r)
        path = urllib.parse.unquote(r.headers["location"])
        self.assertEqual(path, SUBS + "/" + sub_id)
        r = self.billing.get(r.headers["location"])
        self.assertEqual((r.status, r.json()["id"]), (200, sub_id))

    def test_list_filters_and_pages(self):
        for i in range(23):
            self.create(f"list-{i:03d}")
        items, pages = self.page_all(self.billing, SUBS, 5, "&q=LIST-")
        ids = [x["id"] for x in items]
        self.assertEqual(ids, [f"list-{i:03d}" for i in range(23)])
        self.assertEqual(pages, 5)
        r = self.billing.get(SUBS + "?q=list-01&limit=1000")
        self.assertEqual([x["id"] for x in r.json()["items"]], [f"list-{i:03d}" for i in range(10, 20)])


class Usage(ApiTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        for i in range(30):
            r = cls.admin.post(SUBS, {"id": f"exp-{i:03d}", "addresses": [f"100.64.4.{i + 1}"]})
            assert r.status == 201, r

    def test_csv_matches_json(self):
        for i in range(0, 30, 3):
            self.add_usage(f"exp-{i:03d}", "gw-a", i * 1000, i * 3000, i, i * 3)
        self.add_usage("exp-001", "gw-b", 2**40, 1, 1, 1)
        rows, _ = self.page_all(self.billing, "/api/v1/usage", 7)
        self.assertEqual(len({r["subscriber_id"] for r in rows}), len(rows))
        by_id = {r["subscriber_id"]: r for r in rows}
        self.assertEqual(by_id["exp-003"]["up_bytes"], 3000)
        self.assertEqual(by_id["exp-001"]["up_bytes"], 2**40)
        self.assertEqual(by_id["exp-002"]["up_bytes"], 0)  # exists, no traffic: zeros
        csv_rows, cursor = [], None
        while True:
            q = "?limit=7" + (f"&cursor={cursor}" if cursor else "")
            r = self.billing.get("/api/v1/usage" + q, headers={"Accept": "text/csv"})
            self.assertEqual(r.status, 200, r)
            self.assertTrue(r.content_type.startswith("text/csv"), r)
            reader = csv.DictReader(io.StringIO(r.body.decode()))
            self.assertEqual(reader.fieldnames[:4], ["subscriber_id", "plan", "cycle_start", "cycle_end"])
            csv_rows += list(reader)
            cursor = r.headers.get("x-next-cursor")
            if not cursor:
                self.assertNotIn("link", r.headers)
                break
            self.assertIn('rel="next"', r.headers["link"])
        self.assertEqual(len(csv_rows), len(rows))
        for c, j in zip(csv_rows, rows):
            self.assertEqual(c["subscriber_id"], j["subscriber_id"])
            for k in ("up_bytes", "down_bytes", "up_packets", "down_packets"):
                self.assertEqual(int(c[k]), j[k], (c, j))
            self.assertEqual(c["updated_at"] or None, j["updated_at"])

    def test_csv_neutralises_formulas(self):
        ids = ["=HYPERLINK(\"http://x\",\"y\")", "+1", "-2", "@SUM(A1)"]  # no control characters in ids
        for sub_id in ids:
            r = self.admin.post(SUBS, {"id": sub_id})
            self.assertEqual(r.status, 201, r)
        r = self.billing.get("/api/v1/usage?limit=1000", headers={"Accept": "text/csv"})
        self.assertEqual(r.status, 200, r)
        cells = {row["subscriber_id"] for row in csv.DictReader(io.StringIO(r.body.decode()))}
        for sub_id in ids:
            self.assertIn("'" + sub_id, cells)
            self.assertNotIn(sub_id, cells)
        self.assertIn("\r\n\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\",", r.body.decode())
        rows = self.billing.get("/api/v1/usage?limit=1000").json()["items"]
        self.assertTrue(set(ids) <= {row["subscriber_id"] for row in rows})  # JSON: as they are

    def test_cycles(self):
        self.add_usage("exp-010", "gw-a", 111, 222, 3, 4, month=-2)
        old = self.month_start(-2)
        for cycle in (old.isoformat(), (old + datetime.timedelta(days=17)).isoformat()):
            r = self.billing.get(f"/api/v1/usage?cycle={cycle}")
            body = r.json()
            row = [x for x in body["items"] if x["subscriber_id"] == "exp-010"]
            self.assertEqual(row[0]["cycle_start"], old.isoformat() + "T00:00:00Z")  # no plan: UTC month
            self.assertEqual(row[0]["up_bytes"], 111)
        # A cursor belongs to its cycle.
        cursor = self.billing.get("/api/v1/usage?limit=1").json()["next_cursor"]
        self.assertProblem(self.billing.get(f"/api/v1/usage?cycle={old.isoformat()}&cursor={cursor}"), 400)
        self.assertProblem(self.billing.get(f"{SUBS}?cursor={cursor}"), 400)


class Pagination(ApiTestCase):
    def test_no_skips_no_repeats_under_concurrent_inserts(self):
        for i in range(0, 200, 2):
            self.create(f"pg-{i:04d}")
        self.db.exec("UPDATE usage_period SET up_bytes = up_bytes")  # warm
        original = {f"pg-{i:04d}" for i in range(0, 200, 2)}
        stop = threading.Event()
        inserted = []

        def insert(sub_id):
            if self.admin.post(SUBS, {"id": sub_id}).status == 201:
                inserted.append(sub_id)

        def writer():  # in the background, at its own pace
            n = 0
            while not stop.is_set():
                insert(f"pg-{(n * 37) % 200 + 1:04d}-w{n}")  # lands between existing ids
                self.db.exec("UPDATE usage_period SET up_bytes = up_bytes + 1")
                n += 1

        def between_pages(page):  # and for certain: behind, just ahead of and far ahead of the cursor
            for target in (0, page * 7 * 2, page * 7 * 2 + 3, 199):
                insert(f"pg-{target:04d}-p{page}")

        t = threading.Thread(target=writer)
        t.start()
        try:
            subs, _ = self.page_all(self.billing, SUBS, 7, "&q=pg-", between_pages=between_pages)
            usage, _ = self.page_all(self.billing, "/api/v1/usage", 7, between_pages=between_pages)
        finally:
            stop.set()
            t.join()
        self.assertGreater(len(inserted), 50, "rows should have been inserted during paging")
        for name, ids in (("subscribers", [x["id"] for x in subs]),
                          ("usage", [x["subscriber_id"] for x in usage if x["subscriber_id"].startswith("pg-")])):
            with self.subTest(listing=name):
                self.assertEqual(len(ids), len(set(ids)), "a row was repeated")
                self.assertEqual(ids, sorted(ids), "pages out of order")
                self.assertEqual(original - set(ids), set(), "a row was skipped")
                self.assertEqual(set(ids) - original - set(inserted), set())


class Malformed(ApiTestCase):
    def test_malformed_requests(self):
        self.create("mal-1", "100.64.5.1")
        self.create("mal-2")
        cases = api_malformed.cases(self)
        self.assertGreaterEqual(len(cases), 50)
        before = self.db.fingerprint()
        checked = 0
        for case in cases:
            with self.subTest(case=case.name):
                r = case.send(self.admin)
                self.assertProblem(r, case.status)
                for header in case.headers:
                    self.assertIn(header, r.headers)
                body = r.json()
                for member, value in case.expect_body.items():
                    self.assertEqual(body.get(member), value, body)
                self.assertEqual(self.db.fingerprint(), before, "the request changed the database")
                checked += 1
        print(f"\n  malformed requests: {checked} of {len(cases)} answered as expected", file=sys.stderr)


class Outage(ApiTestCase):
    """Runs last: the database goes away and comes back."""

    def test_a_query_held_by_a_lock_ends_at_the_statement_timeout(self):
        """The API's database sessions carry a statement_timeout (5 s): a
        request whose query waits on a lock someone holds is answered 503 once
        it has passed, and holds no worker for longer; afterwards all is well."""
        self.admin.get(SUBS)  # the token is cached now
        locker = subprocess.Popen(["psql", "-X", "-q", "-A", "-t", env("CTQAPI_DB_URL")],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
        try:
            locker.stdin.write("BEGIN;\nLOCK TABLE subscribers IN ACCESS EXCLUSIVE MODE;\n"
                               "SELECT 'locked';\n")
            locker.stdin.flush()
            self.assertEqual(locker.stdout.readline().strip(), "locked")
            started = time.monotonic()
            r = self.admin.get(SUBS)
            took = time.monotonic() - started
            print(f"\n  a request behind a lock: {r.status} after {took:.2f} s", file=sys.stderr)
            self.assertProblem(r, 503)
            self.assertGreater(took, 4.5, "answered before the timeout: the lock was not in the way")
            self.assertLess(took, 10.0, "no statement_timeout on the API's session")
        finally:
            locker.communicate("ROLLBACK;\n", timeout=10)
        self.assertEqual(self.admin.get(SUBS).status, 200)

    def test_database_outage_is_503_never_500(self):
        base, name = env("CTQUOTA_TEST_DB_URL"), env("CTQAPI_DB_NAME")
        self.admin.get(SUBS)  # the token is cached now
        sh(["psql", base, "-qc", f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'])
        sh(["psql", base, "-qc", f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"])
        try:
            self.assertProblem(self.admin.get(SUBS), 503)
            self.assertProblem(self.admin.post(SUBS, {"id": "outage-1"}), 503)
            # Traffic on lo gives the flusher something to write, and it fails.
            r = wait_for(lambda: (lambda x: x if x.status == 503 else None)(self.anon.get("/readyz")),
                         timeout=20, what="/readyz to report the outage")
            self.assertEqual(self.assertProblem(r, 503)["checks"]["database"], "failing")
        finally:
            sh(["psql", base, "-qc", f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'])
        wait_for(lambda: self.anon.get("/readyz").status == 200, timeout=40, what="/readyz to recover")
        self.assertEqual(self.admin.get(SUBS).status, 200)


def run_inside():
    loader = unittest.TestLoader()
    suite = unittest.TestSuite()
    for case in (Health, Auth, Subscribers, Usage, api_bindings.Series, api_bindings.Addresses,
                 api_bindings.Replace, api_bindings.Rules, api_policies.Plans, api_policies.SubscriberPlans,
                 api_policies.TopUps, api_policies.Events, api_policies.PolicyRoles, api_export.Export,
                 api_nat_lookup.NatLookup, Pagination,
                 Malformed, Outage):
        suite.addTests(loader.loadTestsFromTestCase(case))
    result = unittest.TextTestRunner(verbosity=2).run(suite)
    failed = len(result.failures) + len(result.errors)
    print(f"inside: {result.testsRun - failed} passed, {failed} failed")
    return 0 if result.wasSuccessful() else 1


def main():
    if "--inside" in sys.argv:
        return run_inside()
    if os.geteuid() != 0:
        print("test_api.py needs root (a network namespace, nftables)", file=sys.stderr)
        return 1
    with ApiWorld() as world:
        admin = world.cli("token", "create", "--role", "admin", "--name", "test-admin").stdout.strip()
        billing = world.cli("token", "create", "--role", "billing").stdout.strip()
        child_env = dict(os.environ, CTQAPI_DB_URL=world.url, CTQAPI_DB_NAME=world.dbname,
                         CTQAPI_ADMIN=admin, CTQAPI_BILLING=billing, CTQAPI_CONFIG=world.config,
                         CTQUOTA_BIN=world.binary)
        rc = subprocess.run(["ip", "netns", "exec", world.ns, sys.executable, os.path.abspath(__file__),
                             "--inside"], env=child_env).returncode
        stop_rc = world.stop()
        log = world.read_log()
        stopped = stop_rc == 0 and "REST API stopped" in log
        print("ctquotad " + ("stopped cleanly on SIGTERM" if stopped else
                             f"did not stop cleanly on SIGTERM (exit code {stop_rc})"))
        internal = "internal error" in log
        if internal:
            print("FAIL: the daemon logged an internal error (a 500)")
        # The config has no [enforce] section: defaults apply, and the one thing
        # that needs a setting (tc shaping needs the interface) is said once.
        fallback = sum("subscriber_interface" in line for line in log.splitlines())
        if fallback != 1:
            print(f"FAIL: the missing [enforce] subscriber_interface was reported {fallback} times")
        if rc != 0 or not stopped or internal or fallback != 1:
            print("---- ctquotad log (last 60 lines) ----\n" + "\n".join(log.splitlines()[-60:]))
            return 1
        return 0


if __name__ == "__main__":
    sys.exit(main())
