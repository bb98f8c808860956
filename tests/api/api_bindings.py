"""Usage time series and address bindings through the API: the series in UTC
buckets summed over gateways, binding and releasing single addresses (the
RADIUS/DHCP hooks), replacing the set with PUT, and the daemon's index
picking the changes up by itself; the binding rules (pools, minimum lengths,
no overlaps) the same through the API and the CLI, and race-free."""

import datetime
import os
import re
import subprocess
import threading

from api_case import SUBS, ApiTestCase, env
from api_harness import wait_for


def hourly(db, sub_id, hour, gateway, up):
    db.exec("INSERT INTO usage_hourly (subscriber_id, hour, gateway_id, up_bytes, down_bytes, "
            f"up_packets, down_packets) SELECT id, '{hour}', '{gateway}', {up}, 2, 3, 4 "
            f"FROM subscribers WHERE external_id = '{sub_id}'")


def ups(body):
    return [p["up_bytes"] for p in body["points"]]


class Series(ApiTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        r = cls.admin.post(SUBS, {"id": "series-1"})
        assert r.status == 201, r
        for hour, gateway, up in (("2024-01-31 23:00+00", "gw-a", 50),
                                  ("2024-02-01 00:00+00", "gw-a", 10),
                                  ("2024-02-01 00:00+00", "gw-b", 5),
                                  ("2024-02-01 13:00+00", "gw-a", 1)):
            hourly(cls.db, "series-1", hour, gateway, up)

    def series(self, query, client=None):
        r = (client or self.billing).get(SUBS + "/series-1/usage" + query)
        self.assertEqual(r.status, 200, r)
        return r.json()

    def test_granularities(self):
        body = self.series("?granularity=day&from=2024-01-31&to=2024-02-02")
        self.assertEqual((body["subscriber"], body["granularity"]), ("series-1", "day"))
        self.assertEqual([p["start"] for p in body["points"]],
                         ["2024-01-31T00:00:00Z", "2024-02-01T00:00:00Z"])
        self.assertEqual(ups(body), [50, 16])
        self.assertEqual(body["points"][1]["down_packets"], 12)
        self.assertEqual(ups(self.series("?granularity=cycle&from=2023-12-15&to=2024-02-10")), [0, 50, 16])
        hours = self.series("?granularity=hour&from=2024-02-01T01:00:00%2B01:00&to=2024-02-01T02:00:00Z")
        self.assertEqual(ups(hours), [15, 0])
        self.assertEqual(hours["points"][0]["start"], "2024-02-01T00:00:00Z")

    def test_defaults_end_with_the_current_bucket(self):
        now = datetime.datetime.now(datetime.timezone.utc).replace(minute=0, second=0, microsecond=0)
        hourly(self.db, "series-1", now.isoformat(), "gw-a", 700)
        body = self.series("", client=self.admin)
        self.assertEqual(body["granularity"], "hour")
        self.assertEqual(len(body["points"]), 24)
        self.assertEqual(body["points"][-1]["start"], now.strftime("%Y-%m-%dT%H:00:00Z"))
        self.assertEqual(body["points"][-1]["up_bytes"], 700)
        self.assertEqual(len(self.series("?granularity=day")["points"]), 31)
        cycles = self.series("?granularity=cycle")["points"]
        self.assertEqual((len(cycles), cycles[-1]["up_bytes"]), (12, 700))

    def test_bounds_and_unknown_subscribers(self):
        self.assertProblem(self.billing.get(SUBS + "/series-1/usage?from=2020-01-01"), 422)
        self.assertEqual(self.billing.get(SUBS + "/series-1/usage?granularity=day&from=2000-01-01"
                                          "&to=2027-05-19").status, 200)  # 10000 days
        self.assertProblem(self.billing.get(SUBS + "/series-1/usage?granularity=day&from=2000-01-01"
                                            "&to=2027-05-20"), 422)
        self.assertProblem(self.billing.get(SUBS + "/nosuch/usage"), 404)
        self.create("series-gone")
        self.assertEqual(self.admin.delete(SUBS + "/series-gone").status, 204)
        self.assertProblem(self.billing.get(SUBS + "/series-gone/usage"), 404)


class Addresses(ApiTestCase):
    def loaded_bindings(self):
        log = os.path.join(os.path.dirname(env("CTQAPI_CONFIG")), "ctquotad.log")
        with open(log) as f:
            counts = re.findall(r"subscriber index loaded: (\d+) bindings", f.read())
        return int(counts[-1]) if counts else None

    def active_bindings(self):
        return int(self.db.query("SELECT count(*) FROM subscriber_bindings "
                                 "WHERE valid_until IS NULL OR valid_until > now()")[0][0])

    def test_bind_release_and_the_index_follows(self):
        self.create("dyn-1")
        r = self.admin.post(SUBS + "/dyn-1/addresses", {"address": "100.64.20.9/32"})
        self.assertEqual(r.status, 201, r)
        self.assertEqual(r.headers["location"], SUBS + "/dyn-1/addresses/100.64.20.9%2F32")
        self.assertEqual(r.json()["address"], "100.64.20.9/32")
        self.assertIsNone(r.json()["valid_until"])
        again = self.admin.post(SUBS + "/dyn-1/addresses", {"address": "100.64.20.9"})
        self.assertEqual((again.status, again.json()), (200, r.json()))
        self.assertEqual(self.billing.get(SUBS + "/dyn-1").json()["addresses"], ["100.64.20.9/32"])
        wait_for(lambda: self.loaded_bindings() == self.active_bindings(), timeout=10,
                 what="the daemon to reload its index after a bind")

        self.assertEqual(self.admin.delete(SUBS + "/dyn-1/addresses/100.64.20.9%2F32").status, 204)
        self.assertEqual(self.billing.get(SUBS + "/dyn-1").json()["addresses"], [])
        self.assertProblem(self.admin.delete(SUBS + "/dyn-1/addresses/100.64.20.9%2F32"), 404)
        wait_for(lambda: self.loaded_bindings() == self.active_bindings(), timeout=10,
                 what="the daemon to reload its index after a release")
        # Released: another subscriber may take it now.
        self.create("dyn-2")
        self.assertEqual(self.admin.post(SUBS + "/dyn-2/addresses", {"address": "100.64.20.9"}).status, 201)

    def test_valid_from_and_conflicts(self):
        self.create("dyn-3", "100.64.21.1")
        self.create("dyn-4")
        later = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1))
        r = self.admin.post(SUBS + "/dyn-4/addresses",
                            {"address": "100.64.21.2", "valid_from": later.strftime("%Y-%m-%dT%H:%M:%SZ")})
        self.assertEqual(r.status, 201, r)
        self.assertEqual(r.json()["valid_from"], later.strftime("%Y-%m-%dT%H:%M:%SZ"))
        self.assertEqual(self.billing.get(SUBS + "/dyn-4").json()["addresses"], [])  # not yet
        before = self.db.fingerprint()
        body = self.assertProblem(self.admin.post(SUBS + "/dyn-4/addresses", {"address": "100.64.21.1"}), 409)
        self.assertIn("dyn-3", body["detail"])
        self.assertProblem(self.admin.post(SUBS + "/dyn-3/addresses", {"address": "100.64.21.2"}), 409)
        self.assertProblem(self.admin.post(SUBS + "/nosuch/addresses", {"address": "100.64.21.3"}), 404)
        self.assertProblem(self.billing.post(SUBS + "/dyn-4/addresses", {"address": "100.64.21.3"}), 403)
        self.assertProblem(self.billing.delete(SUBS + "/dyn-3/addresses/100.64.21.1"), 403)
        self.assertEqual(self.db.fingerprint(), before)
        # A scheduled binding can be cancelled before it starts.
        self.assertEqual(self.admin.delete(SUBS + "/dyn-4/addresses/100.64.21.2").status, 204)


class Replace(ApiTestCase):
    def test_put_replaces_the_address_set(self):
        self.create("put-1", "100.64.22.1", "100.64.22.2")
        kept_id = self.db.query("SELECT min(b.id) FROM subscriber_bindings b JOIN subscribers s "
                                "ON s.id = b.subscriber_id WHERE s.external_id = 'put-1'")[0][0]
        r = self.admin.request("PUT", SUBS + "/put-1",
                               json_body={"id": "put-1", "addresses": ["100.64.22.1", "2001:db8:22::/56"]})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["addresses"], ["100.64.22.1/32", "2001:db8:22::/56"])
        self.assertEqual(self.billing.get(SUBS + "/put-1").json(), r.json())
        self.assertEqual(self.db.query("SELECT min(b.id) FROM subscriber_bindings b JOIN subscribers s "
                                       "ON s.id = b.subscriber_id WHERE s.external_id = 'put-1' "
                                       "AND b.valid_until IS NULL")[0][0], kept_id)
        self.create("put-2", "100.64.22.9")
        before = self.db.fingerprint()
        self.assertProblem(self.admin.request("PUT", SUBS + "/put-1",
                                              json_body={"addresses": ["100.64.22.9"]}), 409)
        self.assertProblem(self.admin.request("PUT", SUBS + "/nosuch", json_body={"addresses": []}), 404)
        self.assertProblem(self.billing.request("PUT", SUBS + "/put-1", json_body={"addresses": []}), 403)
        self.assertEqual(self.db.fingerprint(), before)
        r = self.admin.request("PUT", SUBS + "/put-1", json_body={"addresses": []})
        self.assertEqual((r.status, r.json()["addresses"]), (200, []))


class Rules(ApiTestCase):
    """[subscribers] of the test config: pools 100.64.0.0/10 and 2001:db8::/32, /24 and /48."""

    def active_in(self, network):
        return int(self.db.query("SELECT count(*) FROM subscriber_bindings WHERE "
                                 f"prefix && '{network}'::cidr AND valid_until IS NULL")[0][0])

    def test_concurrent_overlapping_binds_one_wins(self):
        rounds = 10
        self.create("race-a")
        self.create("race-b")
        for i in range(rounds):
            wide, narrow = f"100.64.{200 + i}.0/24", f"100.64.{200 + i}.77"
            barrier = threading.Barrier(2)
            statuses = {}

            def bind(sub, address):
                barrier.wait()
                statuses[sub] = self.admin.post(f"{SUBS}/{sub}/addresses", {"address": address})

            threads = [threading.Thread(target=bind, args=("race-a", wide)),
                       threading.Thread(target=bind, args=("race-b", narrow))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            codes = sorted(r.status for r in statuses.values())
            self.assertEqual(codes, [201, 409], statuses)
            loser = next(r for r in statuses.values() if r.status == 409)
            self.assertIn(self.assertProblem(loser, 409)["conflict"]["held_by"], ("race-a", "race-b"))
            self.assertEqual(self.active_in(wide), 1)

    def test_own_nesting_is_refused_and_replacing_by_a_nested_prefix_works(self):
        self.create("own-1", "2001:db8:50::/48")
        before = self.db.fingerprint()
        body = self.assertProblem(self.admin.post(SUBS + "/own-1/addresses", {"address": "2001:db8:50:1::/64"}), 409)
        self.assertEqual(body["conflict"]["held_by"], "own-1")
        self.assertEqual(self.db.fingerprint(), before)
        r = self.admin.request("PUT", SUBS + "/own-1", json_body={"addresses": ["2001:db8:50:1::/64"]})
        self.assertEqual((r.status, r.json()["addresses"]), (200, ["2001:db8:50:1::/64"]))

    def test_the_cli_applies_the_same_rules(self):
        self.create("cli-holder", "100.64.51.0/24")
        before = self.db.fingerprint()
        for address, why in (("192.0.2.1", "outside the subscriber pools"),
                             ("100.64.0.0/20", "shorter than the shortest IPv4 binding allowed, /24"),
                             ("100.64.51.9", "lies inside 100.64.51.0/24, bound to subscriber 'cli-holder'")):
            with self.subTest(address=address):
                r = subprocess.run([env("CTQUOTA_BIN"), "--config", env("CTQAPI_CONFIG"), "subscriber",
                                    "add", "cli-refused", "--address", address],
                                   capture_output=True, text=True, timeout=30)
                self.assertEqual(r.returncode, 1, r)
                self.assertIn(why, r.stderr)
                self.assertEqual(self.db.fingerprint(), before)
        self.assertProblem(self.billing.get(SUBS + "/cli-refused"), 404)
