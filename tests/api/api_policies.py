"""Plans, quota overrides, top-ups and enforcement events through the API:
plan sources (a file plan refuses PUT), subscribers on plans with the
allowance computed like the daemon does (core::evaluate), list filters on
plan and state, overrides per cycle, idempotent top-ups (also under 20
concurrent retries), event pages, and the role matrix of every new route."""

import datetime
import json
import threading
import time
import urllib.error
import uuid

from api_case import SUBS, ApiTestCase

PLANS = "/api/v1/plans"


def plan_body(quota=10000, **extra):
    body = {"description": "test plan", "cycle": {"kind": "monthly", "day": 1, "time": "00:00",
                                                  "time_zone": "UTC"},
            "counts": "both", "quota_bytes": quota, "warn_percent": [80],
            "tiers": [{"at_percent": 100, "action": "throttle", "down_bps": 2000000, "up_bps": 1000000}]}
    body.update(extra)
    return body


def file_plan(db, name):
    """A plan as the daemon mirrors it from policies/<name>.toml."""
    definition = json.dumps({"name": name, "cycle": {"kind": "monthly"}})
    db.exec("INSERT INTO plans (name, definition, source, source_file) VALUES "
            f"('{name}', '{definition}', 'file', '/etc/ctquota/policies/{name}.toml') "
            "ON CONFLICT (name) DO NOTHING")


def parse_time(text):
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)


class Plans(ApiTestCase):
    def test_put_get_list(self):
        r = self.admin.request("PUT", PLANS + "/pol-home", json_body=plan_body())
        self.assertEqual(r.status, 201, r)
        self.assertEqual(r.headers["location"], PLANS + "/pol-home")
        body = r.json()
        self.assertEqual((body["name"], body["quota_bytes"], body["source"], body["source_file"]),
                         ("pol-home", 10000, "api", None))
        self.assertEqual(body["tiers"][0]["down_bps"], 2000000)
        self.assertEqual(self.billing.get(PLANS + "/pol-home").json(), body)
        # A GET body can be PUT back (read-only fields are ignored): 200, unchanged.
        again = self.admin.request("PUT", PLANS + "/pol-home", json_body=body)
        self.assertEqual(again.status, 200, again)
        self.assertEqual({k: v for k, v in again.json().items() if k != "updated_at"},
                         {k: v for k, v in body.items() if k != "updated_at"})
        r = self.admin.request("PUT", PLANS + "/pol-home", json_body=plan_body(quota=20000, name="pol-home"))
        self.assertEqual((r.status, r.json()["quota_bytes"]), (200, 20000))
        names = [p["name"] for p in self.billing.get(PLANS).json()["items"]]
        self.assertIn("pol-home", names)
        self.assertEqual(names, sorted(names))
        self.assertProblem(self.billing.get(PLANS + "/pol-nosuch"), 404)

    def test_file_plans_are_read_only(self):
        file_plan(self.db, "pol-file")
        before = self.db.fingerprint()
        body = self.assertProblem(self.admin.request("PUT", PLANS + "/pol-file", json_body=plan_body()), 409)
        self.assertIn("/etc/ctquota/policies/pol-file.toml", body["detail"])
        self.assertEqual(body["source_file"], "/etc/ctquota/policies/pol-file.toml")
        self.assertEqual(self.db.fingerprint(), before)
        got = self.billing.get(PLANS + "/pol-file").json()
        self.assertEqual((got["source"], got["source_file"]), ("file", "/etc/ctquota/policies/pol-file.toml"))

    def test_invalid_plan_names_the_key(self):
        bad = plan_body()
        bad["tiers"][0]["down_bps"] = -5
        body = self.assertProblem(self.admin.request("PUT", PLANS + "/pol-bad", json_body=bad), 422)
        self.assertEqual(body["errors"][0]["field"], "tiers[0].down_bps")
        self.assertProblem(self.billing.get(PLANS + "/pol-bad"), 404)


class SubscriberPlans(ApiTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        for name, quota in (("pol-10k", 10000), ("pol-other", 5000)):
            r = cls.admin.request("PUT", PLANS + "/" + name, json_body=plan_body(quota=quota))
            assert r.status in (200, 201), r
        r = cls.admin.request("PUT", PLANS + "/pol-days", json_body={"cycle": {"kind": "every_n_days", "days": 7}})
        assert r.status in (200, 201), r

    def test_create_with_plan_and_the_allowance(self):
        r = self.admin.post(SUBS, {"id": "pol-sub-1", "addresses": ["100.64.40.1"], "plan": "pol-10k"})
        self.assertEqual(r.status, 201, r)
        body = r.json()
        self.assertEqual(body["plan"], "pol-10k")
        self.assertEqual((body["counted_bytes"], body["quota_bytes"], body["remaining_bytes"]), (0, 10000, 10000))
        self.assertEqual(body["cycle_start"], self.month_start().isoformat() + "T00:00:00Z")
        self.assertEqual(set(body["state"]), {"state", "since", "reason", "down_bps", "up_bps"})
        self.add_usage("pol-sub-1", "gw-a", 1000, 2500, 1, 2)
        self.add_usage("pol-sub-1", "gw-b", 500, 0, 1, 0)
        body = self.billing.get(SUBS + "/pol-sub-1").json()
        self.assertEqual((body["counted_bytes"], body["quota_bytes"], body["remaining_bytes"]), (4000, 10000, 6000))
        # An override replaces the plan's quota for this cycle; top-ups add to it.
        r = self.admin.request("PUT", SUBS + "/pol-sub-1/quota", json_body={"quota_bytes": 3000})
        self.assertEqual(r.status, 201, r)
        self.assertEqual((r.json()["quota_bytes"], r.json()["plan_quota_bytes"], r.json()["allowance_bytes"]),
                         (3000, 10000, 3000))
        body = self.billing.get(SUBS + "/pol-sub-1").json()
        self.assertEqual((body["quota_bytes"], body["remaining_bytes"]), (3000, 0))
        r = self.admin.post(SUBS + "/pol-sub-1/topups", {"bytes": 2000})
        self.assertEqual(r.status, 201, r)
        self.assertEqual(r.json()["expires_at"], body["cycle_end"])  # default: end of the cycle
        body = self.billing.get(SUBS + "/pol-sub-1").json()
        self.assertEqual((body["quota_bytes"], body["remaining_bytes"]), (5000, 1000))
        self.assertEqual(self.admin.delete(SUBS + "/pol-sub-1/quota").status, 204)
        self.assertEqual(self.billing.get(SUBS + "/pol-sub-1").json()["quota_bytes"], 12000)
        self.assertProblem(self.admin.delete(SUBS + "/pol-sub-1/quota"), 404)

    def test_put_changes_the_plan_only_when_given(self):
        self.create("pol-sub-2", "100.64.40.2")
        self.assertIsNone(self.billing.get(SUBS + "/pol-sub-2").json()["quota_bytes"])  # no plan: unlimited
        r = self.admin.request("PUT", SUBS + "/pol-sub-2", json_body={"plan": "pol-other"})
        self.assertEqual((r.status, r.json()["plan"], r.json()["addresses"]), (200, "pol-other", ["100.64.40.2/32"]))
        r = self.admin.request("PUT", SUBS + "/pol-sub-2", json_body={"addresses": []})
        self.assertEqual((r.json()["plan"], r.json()["addresses"]), ("pol-other", []))
        before = self.db.fingerprint()
        body = self.assertProblem(self.admin.request("PUT", SUBS + "/pol-sub-2", json_body={"plan": "pol-nosuch"}), 422)
        self.assertEqual(body["errors"][0]["field"], "plan")
        body = self.assertProblem(self.admin.post(SUBS, {"id": "pol-never", "plan": "pol-nosuch"}), 422)
        self.assertEqual(body["errors"][0]["field"], "plan")
        self.assertEqual(self.db.fingerprint(), before)
        r = self.admin.request("PUT", SUBS + "/pol-sub-2", json_body={"plan": None})
        self.assertEqual((r.status, r.json()["plan"], r.json()["quota_bytes"]), (200, None, None))

    def test_a_returning_subscriber_starts_without_its_old_plan(self):
        self.assertEqual(self.admin.post(SUBS, {"id": "pol-back", "plan": "pol-other"}).status, 201)
        self.assertEqual(self.admin.delete(SUBS + "/pol-back").status, 204)
        r = self.admin.post(SUBS, {"id": "pol-back"})
        self.assertEqual((r.status, r.json()["plan"]), (201, None))

    def test_every_n_days_cycle_counts_from_creation(self):
        r = self.admin.post(SUBS, {"id": "pol-sub-3", "plan": "pol-days"})
        self.assertEqual(r.status, 201, r)
        body = r.json()
        start, end = parse_time(body["cycle_start"]), parse_time(body["cycle_end"])
        self.assertEqual(end - start, datetime.timedelta(days=7))
        self.assertLessEqual(abs(start - parse_time(body["created_at"])), datetime.timedelta(seconds=1))
        self.assertIsNone(body["quota_bytes"])  # no quota_bytes: unlimited

    def test_list_filters_on_plan_and_state(self):
        for i in range(3):
            self.admin.post(SUBS, {"id": f"pol-flt-{i}", "plan": "pol-other" if i else None})
        self.db.exec("INSERT INTO subscriber_state (subscriber_id, state, reason, since) "
                     "SELECT id, 'blocked', 'test', now() FROM subscribers WHERE external_id = 'pol-flt-2'")
        ids = lambda q: [x["id"] for x in self.billing.get(SUBS + "?q=pol-flt-&" + q).json()["items"]]
        self.assertEqual(ids("plan=pol-other"), ["pol-flt-1", "pol-flt-2"])
        self.assertEqual(ids("state=blocked"), ["pol-flt-2"])
        self.assertEqual(ids("state=normal"), ["pol-flt-0", "pol-flt-1"])
        self.assertEqual(ids("plan=pol-other&state=normal&limit=1"), ["pol-flt-1"])
        detail = self.billing.get(SUBS + "/pol-flt-2").json()["state"]
        self.assertEqual((detail["state"], detail["reason"]), ("blocked", "test"))
        self.assertProblem(self.billing.get(SUBS + "?state=asleep"), 400)


class TopUps(ApiTestCase):
    def test_idempotent_retry_and_reused_key(self):
        self.create("pol-top-1")
        key = {"Idempotency-Key": "order-" + uuid.uuid4().hex}
        first = self.admin.post(SUBS + "/pol-top-1/topups", {"bytes": 5000, "expires_at": "2030-01-01T00:00:00Z"},
                                headers=key)
        self.assertEqual(first.status, 201, first)
        self.assertNotIn("idempotent-replayed", first.headers)
        # The same body, spelled differently: a retry.
        retry = self.admin.request("POST", SUBS + "/pol-top-1/topups", headers=key,
                                   body='{ "expires_at": "2030-01-01T00:00:00Z",  "bytes": 5000 }')
        self.assertEqual((retry.status, retry.json()), (200, first.json()))
        self.assertEqual(retry.headers.get("idempotent-replayed"), "true")
        before = self.db.fingerprint()
        body = self.assertProblem(self.admin.post(SUBS + "/pol-top-1/topups", {"bytes": 6000}, headers=key), 422)
        self.assertEqual(body["errors"][0]["field"], "Idempotency-Key")
        self.assertEqual(self.db.fingerprint(), before)
        # Without a key every POST credits.
        self.assertEqual(self.admin.post(SUBS + "/pol-top-1/topups", {"bytes": 1}).status, 201)
        items = self.billing.get(SUBS + "/pol-top-1/topups").json()["items"]
        self.assertEqual([t["bytes"] for t in items], [1, 5000])  # newest first
        self.assertTrue(all(t["active"] for t in items))

    def test_twenty_concurrent_retries_credit_once(self):
        self.create("pol-top-2")
        key = {"Idempotency-Key": str(uuid.uuid4())}
        results = []
        barrier = threading.Barrier(20)

        def retry():
            barrier.wait()
            # A burst of 20 connections can overflow the listen backlog (cpp-httplib's is 5);
            # a client whose connection broke retries with the same key, which is the point.
            for attempt in range(10):
                try:
                    results.append(self.admin.post(SUBS + "/pol-top-2/topups", {"bytes": 777}, headers=key))
                    return
                except (ConnectionError, urllib.error.URLError):
                    time.sleep(0.05 * (attempt + 1))

        threads = [threading.Thread(target=retry) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(len(results), 20)
        statuses = sorted(r.status for r in results)
        # One 201 unless the response that credited was lost with its connection.
        self.assertIn(statuses, ([200] * 19 + [201], [200] * 20), results)
        self.assertEqual(len({r.body for r in results}), 1)
        self.assertEqual(sum(r.headers.get("idempotent-replayed") == "true" for r in results),
                         statuses.count(200))
        rows = self.db.query("SELECT count(*), sum(bytes) FROM topups t JOIN subscribers s "
                             "ON s.id = t.subscriber_id WHERE s.external_id = 'pol-top-2'")
        self.assertEqual(rows, [["1", "777"]])

    def test_topups_past_the_allowance_limit_are_refused(self):
        eb = 10 ** 18  # core::kMaxQuotaBytes; an allowance holds at most 2 EB (kMaxAllowanceBytes)
        r = self.admin.request("PUT", PLANS + "/pol-1eb", json_body=plan_body(quota=eb))
        self.assertIn(r.status, (200, 201), r)
        self.admin.post(SUBS, {"id": "pol-top-4", "plan": "pol-1eb"})
        self.assertEqual(self.admin.request("PUT", SUBS + "/pol-top-4/quota", json_body={"quota_bytes": eb}).status,
                         201)
        key = {"Idempotency-Key": "pol-top-4-last"}
        for i in range(10):
            r = self.admin.post(SUBS + "/pol-top-4/topups", {"bytes": eb // 10}, headers=key if i == 9 else None)
            self.assertEqual(r.status, 201, r)
        before = self.db.fingerprint()
        body = self.assertProblem(self.admin.post(SUBS + "/pol-top-4/topups", {"bytes": 1}), 422)
        self.assertEqual(body["type"], "urn:ctquota:problem:allowance-limit")
        self.assertEqual(body["errors"][0]["field"], "bytes")
        self.assertIn(str(eb), body["detail"])
        self.assertIn(str(eb + 1), body["detail"])  # the sum it would have made
        self.assertEqual(self.db.fingerprint(), before)
        # A retry of the top-up that reached the limit is still a replay, not a refusal.
        r = self.admin.post(SUBS + "/pol-top-4/topups", {"bytes": eb // 10}, headers=key)
        self.assertEqual((r.status, r.headers.get("idempotent-replayed")), (200, "true"))
        self.assertEqual(self.billing.get(SUBS + "/pol-top-4").json()["quota_bytes"], 2 * eb)
        # Rows written behind the API's back: the allowance saturates at 2 EB, never wraps.
        self.db.exec("INSERT INTO topups (subscriber_id, bytes, created_at, expires_at) SELECT id, "
                     "9000000000000000000, now(), now() + interval '1 day' FROM subscribers "
                     "WHERE external_id = 'pol-top-4'")
        body = self.billing.get(SUBS + "/pol-top-4").json()
        self.assertEqual((body["quota_bytes"], body["remaining_bytes"]), (2 * eb, 2 * eb))

    def test_pages(self):
        self.create("pol-top-3")
        for i in range(5):
            self.assertEqual(self.admin.post(SUBS + "/pol-top-3/topups", {"bytes": i + 1}).status, 201)
        items, pages = self.page_all(self.billing, SUBS + "/pol-top-3/topups", 2)
        self.assertEqual(([t["bytes"] for t in items], pages), ([5, 4, 3, 2, 1], 3))


class Events(ApiTestCase):
    def test_newest_first_in_pages(self):
        self.create("pol-ev-1")
        self.db.exec("INSERT INTO enforcement_events (subscriber_id, kind, from_state, to_state, reason, "
                     "counted_bytes, allowance_bytes, detail) SELECT s.id, 'state', 'normal', 'throttled', "
                     "'step ' || g, g * 100, 1000, json_build_object('n', g) FROM subscribers s, "
                     "generate_series(1, 7) g WHERE s.external_id = 'pol-ev-1' ORDER BY g")
        items, pages = self.page_all(self.billing, SUBS + "/pol-ev-1/events", 3)
        self.assertEqual(pages, 3)
        self.assertEqual([e["reason"] for e in items], [f"step {g}" for g in range(7, 0, -1)])
        self.assertEqual(items[0]["detail"], {"n": 7})
        self.assertEqual((items[0]["from_state"], items[0]["to_state"], items[0]["counted_bytes"]),
                         ("normal", "throttled", 700))
        self.assertEqual(self.billing.get(SUBS + "/pol-ev-1/events").json()["next_cursor"], None)
        self.assertProblem(self.billing.get(SUBS + "/pol-nosuch/events"), 404)


class PolicyRoles(ApiTestCase):
    def test_billing_reads_but_cannot_write(self):
        self.create("pol-role-1")
        self.assertEqual(self.admin.request("PUT", PLANS + "/pol-role", json_body=plan_body()).status, 201)
        for path in (PLANS, PLANS + "/pol-role", SUBS + "/pol-role-1/quota", SUBS + "/pol-role-1/topups",
                     SUBS + "/pol-role-1/events"):
            with self.subTest(path=path):
                self.assertEqual(self.billing.get(path).status, 200)
                self.assertProblem(self.anon.get(path), 401)
        before = self.db.fingerprint()
        writes = [("PUT", PLANS + "/pol-role", plan_body()), ("PUT", PLANS + "/pol-role-new", plan_body()),
                  ("PUT", SUBS + "/pol-role-1/quota", {"quota_bytes": 1}),
                  ("DELETE", SUBS + "/pol-role-1/quota", None),
                  ("POST", SUBS + "/pol-role-1/topups", {"bytes": 1}),
                  ("PUT", SUBS + "/pol-role-1", {"plan": "pol-role"}),
                  ("POST", SUBS, {"id": "pol-role-2", "plan": "pol-role"})]
        for method, path, body in writes:
            with self.subTest(method=method, path=path):
                self.assertProblem(self.billing.request(method, path, json_body=body), 403)
                self.assertProblem(self.anon.request(method, path, json_body=body), 401)
        self.assertEqual(self.db.fingerprint(), before)
