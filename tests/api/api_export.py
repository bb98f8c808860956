"""The bulk usage export per subscriber cycle: subscribers on every shipped
plan (policies/*.toml, PUT through the API) and one without a plan, usage in
the current and the previous cycle and hourly rows across a cycle boundary
and a DST change. Export rows equal GET /subscribers/{id} and the SQL view
usage_current; JSON equals CSV; cycle=<date> picks each plan's cycle; the
range export sums equal the hourly rows; a cursor stays stable while rows
are written; q finds a subscriber by an address inside its prefix."""

import csv
import datetime
import glob
import io
import os
import re
import tomllib
import urllib.parse

from api_case import SUBS, ApiTestCase

USAGE = "/api/v1/usage"
POLICIES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "policies")
SI = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def size(text):
    if text == "unlimited":
        return None
    m = re.fullmatch(r"([\d.]+)\s*([kMGT]?)B", text)
    return int(float(m.group(1)) * SI[m.group(2)])


def rate(text):
    m = re.fullmatch(r"([\d.]+)\s*([kMG]?)bit/s", text)
    return int(float(m.group(1)) * SI[m.group(2)])


def shipped_plans():
    """{name: API JSON body} of policies/*.toml."""
    out = {}
    for path in sorted(glob.glob(os.path.join(POLICIES, "*.toml"))):
        with open(path, "rb") as f:
            t = tomllib.load(f)
        body = {k: t[k] for k in ("description", "counts", "warn_percent", "zero_rated",
                                  "always_allowed", "free_windows") if k in t}
        body["cycle"] = t["cycle"]
        body["quota_bytes"] = size(t["quota"])
        body["tiers"] = [{"at_percent": x["at_percent"], "action": x["action"],
                          **({"down_bps": rate(x["down"]), "up_bps": rate(x["up"])} if "down" in x else {})}
                         for x in t.get("tiers", [])]
        out[os.path.basename(path)[:-5]] = body
    return out


def utc(text):
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)


def csv_text(value):
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return str(value)


class Export(ApiTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.plans = shipped_plans()
        assert len(cls.plans) >= 5, cls.plans
        cls.subs = {}
        for i, (name, body) in enumerate(sorted(cls.plans.items())):
            r = cls.admin.request("PUT", f"/api/v1/plans/{name}", json_body=body)
            assert r.status in (200, 201), (name, r)
            sub = f"cyc-{i}-{name}"
            r = cls.admin.post(SUBS, {"id": sub, "plan": name, "addresses": [f"100.64.70.{i + 1}"]})
            assert r.status == 201, r
            cls.subs[sub] = name
        r = cls.admin.post(SUBS, {"id": "cyc-9-none", "addresses": ["100.64.70.99"]})
        assert r.status == 201, r
        cls.subs["cyc-9-none"] = None
        # Subscribers of long standing, so they existed in their previous cycles too.
        cls.db.exec("UPDATE subscribers SET created_at = date_trunc('second', created_at) - interval '100 days' "
                    "WHERE external_id LIKE 'cyc-%'")
        # Usage in each subscriber's current and previous cycle (two gateways).
        cls.prev = {}
        for n, sub in enumerate(sorted(cls.subs)):
            d = cls.admin.get(f"{SUBS}/{sub}").json()
            start, end = d["cycle_start"], d["cycle_end"]
            prev_start = utc(start) - (utc(end) - utc(start)) if cls.subs[sub] == "prepaid-10g" else None
            for gw, k in (("gw-a", 1), ("gw-b", 2)):
                cls.db.exec(
                    "INSERT INTO usage_period (subscriber_id, period_start, period_end, gateway_id, up_bytes, "
                    f"down_bytes, up_packets, down_packets) SELECT id, '{start}', '{end}', '{gw}', "
                    f"{(n + 1) * 1000 * k}, {(n + 1) * 7000 * k}, {k}, {2 * k} FROM subscribers WHERE external_id = '{sub}'")
            # The previous cycle: the one containing 2 days before this one started.
            before = utc(start) - datetime.timedelta(days=2)
            cls.prev[sub] = (before.date().isoformat(), start, prev_start)

    def export(self, extra="", limit=2, csv_too=True):
        rows, cursor = [], None
        while True:
            q = f"?limit={limit}{extra}" + (f"&cursor={urllib.parse.quote(cursor)}" if cursor else "")
            r = self.billing.get(USAGE + q)
            self.assertEqual(r.status, 200, r)
            rows += r.json()["items"]
            cursor = r.json()["next_cursor"]
            if cursor is None:
                break
        if csv_too:
            lines, cursor = [], None
            while True:
                q = f"?limit={limit}{extra}" + (f"&cursor={urllib.parse.quote(cursor)}" if cursor else "")
                r = self.billing.get(USAGE + q, headers={"Accept": "text/csv"})
                self.assertEqual(r.status, 200, r)
                reader = csv.DictReader(io.StringIO(r.body.decode()))
                self.assertEqual(reader.fieldnames, list(rows[0].keys()) if rows else reader.fieldnames)
                lines += list(reader)
                cursor = r.headers.get("x-next-cursor")
                if not cursor:
                    break
            # JSON == CSV: same rows, same columns, same values (text that a
            # spreadsheet would run as a formula starts with ' in the CSV).
            self.assertEqual(len(lines), len(rows))
            for c, j in zip(lines, rows):
                self.assertEqual(c, {k: csv_text(v) for k, v in j.items()})
        return rows

    def test_current_cycle_per_subscriber(self):
        rows = {r["subscriber_id"]: r for r in self.export() if r["subscriber_id"] in self.subs}
        self.assertEqual(set(rows), set(self.subs))
        view = {r[0]: r for r in self.db.query(
            "SELECT subscriber_id, to_char(cycle_start AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "
            "to_char(cycle_end AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), up_bytes, down_bytes, "
            "up_packets, down_packets, coalesce(plan, '') FROM usage_current WHERE subscriber_id LIKE 'cyc-%'")}
        total = 0
        for sub, plan in self.subs.items():
            with self.subTest(subscriber=sub):
                d = self.billing.get(f"{SUBS}/{sub}").json()
                row = rows[sub]
                self.assertEqual(row["plan"], plan)
                for k in ("cycle_start", "cycle_end", "up_bytes", "down_bytes", "up_packets", "down_packets"):
                    self.assertEqual(row[k], d[k], k)
                self.assertGreater(row["down_bytes"], 0)
                self.assertEqual(view[sub][1:], [row["cycle_start"], row["cycle_end"], str(row["up_bytes"]),
                                                 str(row["down_bytes"]), str(row["up_packets"]),
                                                 str(row["down_packets"]), plan or ""])
                total += row["up_bytes"] + row["down_bytes"]
        # Not the calendar month for everyone: the plans' cycles differ.
        self.assertGreater(len({r["cycle_start"] for r in rows.values()}), 1)
        self.assertEqual(total, sum(int(v[3]) + int(v[4]) for v in view.values()))

    def test_cycle_date_picks_each_plans_cycle(self):
        by_date = {}
        for sub, (date, current_start, _) in self.prev.items():
            by_date.setdefault(date, []).append((sub, current_start))
        for date, subs in by_date.items():
            rows = {r["subscriber_id"]: r for r in self.export(f"&cycle={date}", limit=3, csv_too=False)}
            for sub, current_start in subs:
                with self.subTest(subscriber=sub, cycle=date):
                    row = rows[sub]
                    self.assertEqual(row["cycle_end"], current_start)  # the cycle before the current one
                    self.assertLessEqual(utc(row["cycle_start"]).date().isoformat(), date)
                    self.assertEqual((row["up_bytes"], row["down_bytes"]), (0, 0))
        # The date a business-fup cycle starts on (the 15th, 06:00 New York) names that cycle.
        sub = next(s for s, p in self.subs.items() if p == "business-fup")
        d = self.billing.get(f"{SUBS}/{sub}").json()
        day = d["cycle_start"][:10]
        row = [r for r in self.export(f"&cycle={day}", limit=1000, csv_too=False) if r["subscriber_id"] == sub][0]
        self.assertEqual((row["cycle_start"], row["up_bytes"]), (d["cycle_start"], d["up_bytes"]))

    def test_range_export_across_a_boundary_and_dst(self):
        # Berlin: DST ends 2026-10-25 01:00 UTC; home-100g's cycle starts 2026-10-31 23:00 UTC.
        sub = next(s for s, p in self.subs.items() if p == "home-100g")
        hours = ["2026-10-24T23:00:00Z", "2026-10-25T00:00:00Z", "2026-10-25T01:00:00Z", "2026-10-25T02:00:00Z",
                 "2026-10-31T22:00:00Z", "2026-10-31T23:00:00Z", "2026-11-01T00:00:00Z"]
        for i, h in enumerate(hours):
            for gw in ("gw-a", "gw-b"):
                self.db.exec("INSERT INTO usage_hourly (subscriber_id, hour, gateway_id, up_bytes, down_bytes, "
                             f"up_packets, down_packets) SELECT id, '{h}', '{gw}', {i + 1}, {10 * (i + 1)}, 1, 1 "
                             f"FROM subscribers WHERE external_id IN ('{sub}', 'cyc-9-none')")
        rng = "&from=2026-10-24T00:00:00Z&to=2026-11-02T00:00:00Z"
        hourly = self.export(rng + "&granularity=hour", limit=3)
        mine = [r for r in hourly if r["subscriber_id"] == sub]
        self.assertEqual([r["start"] for r in mine], hours)
        self.assertEqual([r["up_bytes"] for r in mine], [2 * (i + 1) for i in range(len(hours))])
        self.assertEqual(mine[0]["end"], "2026-10-25T00:00:00Z")
        self.assertEqual(mine[0]["plan"], "home-100g")
        daily = self.export(rng + "&granularity=day", limit=2)
        stored = self.db.query("SELECT sum(up_bytes), sum(down_bytes) FROM usage_hourly WHERE "
                               "hour >= '2026-10-24T00:00:00Z' AND hour < '2026-11-02T00:00:00Z'")[0]
        for rows in (hourly, daily):
            self.assertEqual([str(sum(r["up_bytes"] for r in rows)), str(sum(r["down_bytes"] for r in rows))], stored)
        keys = [(r["subscriber_id"], r["start"]) for r in hourly]
        self.assertEqual(len(keys), len(set(keys)))
        self.assertEqual(len([r for r in daily if r["subscriber_id"] == sub]), 4)  # 24th, 25th, 31st, 1st
        self.assertEqual(self.export(rng + "&granularity=hour", limit=1000), hourly)
        # Parameters: one export at a time, whole ranges, hour or day.
        for q in ("?cycle=current&from=2026-10-24&to=2026-10-25", "?from=2026-10-24", "?to=2026-10-24",
                  "?from=2026-10-24&to=2026-10-25&granularity=cycle", "?from=yesterday&to=2026-10-25",
                  "?cycle=2026-13-01", "?cycle=soon"):
            with self.subTest(query=q):
                self.assertProblem(self.billing.get(USAGE + q), 400)
        self.assertProblem(self.billing.get(USAGE + "?from=2026-10-25&to=2026-10-24"), 422)
        cursor = self.billing.get(USAGE + "?limit=1" + rng).json()["next_cursor"]
        self.assertProblem(self.billing.get(USAGE + f"?limit=1&cursor={cursor}"), 400)
        self.assertProblem(self.billing.get(USAGE + f"?limit=1&from=2026-10-01&to=2026-10-02&cursor={cursor}"), 400)

    def test_cursor_stable_while_usage_is_written(self):
        first = self.billing.get(USAGE + "?limit=3").json()
        cursor = first["next_cursor"]
        seen = [r["subscriber_id"] for r in first["items"]]
        n = 0
        while cursor:
            self.db.exec("UPDATE usage_period SET up_bytes = up_bytes + 1, updated_at = now()")
            self.admin.post(SUBS, {"id": f"cyc-0-new-{n}"})  # sorts before the cursor
            n += 1
            r = self.billing.get(USAGE + f"?limit=3&cursor={urllib.parse.quote(cursor)}")
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json()["as_of"], first["as_of"])  # pinned
            seen += [x["subscriber_id"] for x in r.json()["items"]]
            cursor = r.json()["next_cursor"]
        self.assertEqual(len(seen), len(set(seen)), "a row was repeated")
        self.assertEqual(set(self.subs) - set(seen), set())

    def test_q_finds_by_address(self):
        self.assertEqual(self.admin.post(SUBS, {"id": "addr-find", "addresses": ["100.64.77.0/24",
                                                                                   "2001:db8:77::/48"]}).status, 201)
        for q, found in (("100.64.77.9", True), ("2001:db8:77:1::5", True), ("100.64.78.9", False),
                         ("2001:db8:78::5", False), ("100.64.77.0/24", True), ("addr-FIND", True)):
            with self.subTest(q=q):
                ids = [x["id"] for x in self.billing.get(SUBS + "?q=" + urllib.parse.quote(q)).json()["items"]]
                self.assertEqual("addr-find" in ids, found, ids)
