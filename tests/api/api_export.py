"""The bulk usage export per subscriber cycle: subscribers on every shipped
plan (policies/*.toml, PUT through the API) and one without a plan. Usage is
stored as ctquotad stores it (usage_period per subscriber, cycle and gateway
with period_end and the free-window part; usage_hourly per subscriber, UTC
hour and gateway) at instants in the previous and the current cycle, on both
sides of each plan's own cycle boundary and, for the plans in zones with
summer time, on both sides of the latest DST change. The cycles are computed
here (zoneinfo), not taken from ctquotad.

Checked against those rows: cycle=current per subscriber and in total, equal
to GET /subscribers/{id} and the SQL view usage_current; cycle=<a date> picks
each plan's cycle containing it (previous cycles, the cycle with the DST
change); the range export (hour and day) equals the hourly rows; JSON equals
CSV; a cursor stays stable while rows are written; q finds a subscriber by an
address inside its prefix."""

import calendar
import csv
import datetime
import glob
import io
import os
import re
import tomllib
import urllib.parse
import zoneinfo

from api_case import SUBS, ApiTestCase

USAGE = "/api/v1/usage"
POLICIES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "policies")
SI = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
UTC = datetime.timezone.utc
SECOND = datetime.timedelta(seconds=1)
HOUR = datetime.timedelta(hours=1)
COUNTERS = ("up_bytes", "down_bytes", "up_packets", "down_packets")
NO_PLAN_CYCLE = {"kind": "monthly", "day": 1, "time": "00:00", "time_zone": "UTC"}


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
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def iso(t):
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def csv_text(value):
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return str(value)


# -- billing cycles, computed independently of ctquotad (policies/README.md) ----

def _month(y, m, k):
    i = y * 12 + m - 1 + k
    return i // 12, i % 12 + 1


def _monthly_start(spec, y, m):
    hh, mm = map(int, spec["time"].split(":"))
    day = min(spec["day"], calendar.monthrange(y, m)[1])
    return datetime.datetime(y, m, day, hh, mm, tzinfo=zoneinfo.ZoneInfo(spec["time_zone"])).astimezone(UTC)


def cycle_at(spec, anchor, t):
    """(start, end) of the cycle of `spec` (None: no plan) that contains t."""
    spec = spec or NO_PLAN_CYCLE
    if spec["kind"] == "every_n_days":  # N x 24 h from the subscriber's start
        length = datetime.timedelta(days=spec["days"])
        start = anchor + length * ((t - anchor) // length)
        return start, start + length
    local = t.astimezone(zoneinfo.ZoneInfo(spec["time_zone"]))
    y, m = local.year, local.month
    while _monthly_start(spec, y, m) > t:
        y, m = _month(y, m, -1)
    while _monthly_start(spec, *_month(y, m, 1)) <= t:
        y, m = _month(y, m, 1)
    return _monthly_start(spec, y, m), _monthly_start(spec, *_month(y, m, 1))


def last_offset_change(zone, before):
    """The latest instant before `before` at which `zone`'s UTC offset changed (None: never in a year)."""
    tz = zoneinfo.ZoneInfo(zone)
    t = before.replace(minute=0, second=0, microsecond=0)
    for _ in range(24 * 400):
        if (t - HOUR).astimezone(tz).utcoffset() != t.astimezone(tz).utcoffset():
            return t
        t -= HOUR
    return None


def in_free_window(plan, t):
    if not plan or not plan.get("free_windows"):
        return False
    local = t.astimezone(zoneinfo.ZoneInfo(plan["cycle"]["time_zone"])).strftime("%H:%M")
    return any(w["start"] <= local < w["end"] if w["start"] < w["end"] else not w["end"] <= local < w["start"]
               for w in plan["free_windows"])


class Stored:
    """The usage rows, summed as ctquotad's flushes would sum them: per
    (subscriber, cycle, gateway) in usage_period and (subscriber, UTC hour,
    gateway) in usage_hourly."""

    def __init__(self):
        self.periods = {}  # (sub, start, end, gw) -> [ub, db, up, dp, free_up, free_down]
        self.hours = {}    # (sub, hour, gw) -> [ub, db, up, dp]

    def add(self, sub, cycle, at, gw, counters, free):
        p = self.periods.setdefault((sub, cycle[0], cycle[1], gw), [0] * 6)
        h = self.hours.setdefault((sub, at.replace(minute=0, second=0), gw), [0] * 4)
        for i, v in enumerate(counters + (counters[:2] if free else (0, 0))):
            p[i] += v
        for i, v in enumerate(counters):
            h[i] += v

    def cycle(self, sub, cycle):
        """{up_bytes, …, free_bytes} of one cycle, summed over gateways."""
        rows = [v for (s, a, b, _), v in self.periods.items() if (s, a, b) == (sub, *cycle)]
        out = dict(zip(COUNTERS, (sum(r[i] for r in rows) for i in range(4))))
        out["free_bytes"] = sum(r[4] + r[5] for r in rows)
        return out

    def buckets(self, subs, bucket):
        """{(sub, bucket start): {up_bytes, …}} of the hourly rows, summed over gateways."""
        out = {}
        for (sub, hour, _), v in self.hours.items():
            if sub in subs:
                o = out.setdefault((sub, iso(bucket(hour))), dict.fromkeys(COUNTERS, 0))
                for k, x in zip(COUNTERS, v):
                    o[k] += x
        return out

    def sql(self):
        def values(rows):
            return ", ".join("(" + ", ".join(f"'{x}'" if isinstance(x, str) else str(x) for x in row) + ")"
                             for row in rows)
        periods = values((s, iso(a), iso(b), gw, *v) for (s, a, b, gw), v in self.periods.items())
        hours = values((s, iso(h), gw, *v) for (s, h, gw), v in self.hours.items())
        return ("INSERT INTO usage_period (subscriber_id, period_start, period_end, gateway_id, up_bytes, "
                "down_bytes, up_packets, down_packets, free_up_bytes, free_down_bytes) SELECT s.id, "
                "v.a::timestamptz, v.b::timestamptz, v.gw, v.ub, v.db, v.up, v.dp, v.fu, v.fd FROM (VALUES "
                f"{periods}) AS v(sub, a, b, gw, ub, db, up, dp, fu, fd) JOIN subscribers s ON "
                "s.external_id = v.sub AND s.removed_at IS NULL; "
                "INSERT INTO usage_hourly (subscriber_id, hour, gateway_id, up_bytes, down_bytes, up_packets, "
                "down_packets) SELECT s.id, v.h::timestamptz, v.gw, v.ub, v.db, v.up, v.dp FROM (VALUES "
                f"{hours}) AS v(sub, h, gw, ub, db, up, dp) JOIN subscribers s ON s.external_id = v.sub "
                "AND s.removed_at IS NULL")


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
        now = datetime.datetime.now(UTC)
        cls.stored = Stored()
        cls.current, cls.past = {}, {}  # sub -> (start, end); sub -> [(start, end), …]
        for n, (sub, plan) in enumerate(sorted(cls.subs.items())):
            body = cls.plans.get(plan)
            spec = body and body["cycle"]
            anchor = utc(cls.admin.get(f"{SUBS}/{sub}").json()["created_at"])
            cur = cycle_at(spec, anchor, now)
            prev = cycle_at(spec, anchor, cur[0] - SECOND)
            # Both sides of the boundary between the two cycles, and their other ends.
            at = [prev[0], prev[0] + 1.5 * HOUR, prev[1] - 1.5 * HOUR, prev[1] - SECOND,
                  cur[0], cur[0] + 1.5 * HOUR]
            change = spec and last_offset_change(spec["time_zone"], now - HOUR)
            if change:  # both sides of the zone's latest DST change, in whichever cycle it fell
                at += [change - HOUR / 2, change + HOUR / 2]
            cls.current[sub] = cur
            for j, t in enumerate(at):
                cycle = cycle_at(spec, anchor, t)
                if cycle != cur and cycle not in cls.past.setdefault(sub, []):
                    cls.past[sub].append(cycle)
                for k, gw in ((1, "gw-a"), (2, "gw-b")):
                    up = k * (1000 * (n + 1) + 10 * j + 1)
                    cls.stored.add(sub, cycle, t, gw, (up, 7 * up, k * (j + 1), 2 * k * (j + 1)),
                                   in_free_window(body, t))
        cls.db.exec(cls.stored.sql())

    def on_plan(self, plan):
        return next(s for s, p in self.subs.items() if p == plan)

    def expected(self, sub, cycle):
        return {"subscriber_id": sub, "plan": self.subs[sub], "cycle_start": iso(cycle[0]),
                "cycle_end": iso(cycle[1]),
                **{k: v for k, v in self.stored.cycle(sub, cycle).items() if k in COUNTERS}}

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
        view = {r[0]: r[1:] for r in self.db.query(
            "SELECT subscriber_id, to_char(cycle_start AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "
            "to_char(cycle_end AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), up_bytes, down_bytes, "
            "up_packets, down_packets, coalesce(plan, '') FROM usage_current WHERE subscriber_id LIKE 'cyc-%'")}
        self.assertEqual(set(view), set(self.subs))
        total = 0
        for sub, cycle in self.current.items():
            with self.subTest(subscriber=sub):
                want = self.expected(sub, cycle)
                self.assertGreater(want["down_bytes"], 0)
                row = rows[sub]
                self.assertEqual({k: row[k] for k in want}, want)
                d = self.billing.get(f"{SUBS}/{sub}").json()
                self.assertEqual({k: d[k] for k in want if k != "subscriber_id"},
                                 {k: v for k, v in want.items() if k != "subscriber_id"})
                # Free-window bytes (night-free) are stored and shown, but not counted.
                free = self.stored.cycle(sub, cycle)["free_bytes"]
                self.assertEqual(d["counted_bytes"], want["up_bytes"] + want["down_bytes"] - free)
                self.assertEqual(view[sub], [want["cycle_start"], want["cycle_end"],
                                             *(str(want[k]) for k in COUNTERS), self.subs[sub] or ""])
                total += row["up_bytes"] + row["down_bytes"]
        night = self.on_plan("night-free")
        self.assertGreater(self.stored.cycle(night, self.current[night])["free_bytes"], 0)
        # Not the calendar month for everyone: the plans' cycles differ.
        self.assertGreater(len({r["cycle_start"] for r in rows.values()}), 2)
        self.assertEqual(total, sum(int(v[2]) + int(v[3]) for v in view.values()))
        self.assertEqual(total, sum(w["up_bytes"] + w["down_bytes"]
                                    for w in (self.expected(s, c) for s, c in self.current.items())))

    def test_cycle_date_picks_each_plans_cycle(self):
        """cycle=<date>: the cycle running at the end of that day in the plan's zone. For each
        cycle before the current one that holds usage, a date inside it names it."""
        by_date = {}
        for sub, cycles in self.past.items():
            zone = zoneinfo.ZoneInfo((self.plans.get(self.subs[sub]) or {"cycle": NO_PLAN_CYCLE})["cycle"]["time_zone"])
            for cycle in cycles:
                date = (cycle[0] + datetime.timedelta(hours=36)).astimezone(zone).date().isoformat()
                by_date.setdefault(date, []).append((sub, cycle))
        previous = 0
        for date, subs in sorted(by_date.items()):
            rows = {r["subscriber_id"]: r for r in self.export(f"&cycle={date}", limit=1000, csv_too=False)}
            for sub, cycle in subs:
                with self.subTest(subscriber=sub, cycle=date):
                    want = self.expected(sub, cycle)
                    self.assertEqual({k: rows[sub][k] for k in want}, want)
                    self.assertGreater(want["down_bytes"], 0)
                    self.assertNotEqual(want["down_bytes"], self.expected(sub, self.current[sub])["down_bytes"])
                    previous += cycle[1] == self.current[sub][0]
        self.assertEqual(previous, len(self.subs))  # every subscriber's previous cycle was read
        # A DST change inside a monthly cycle in local time makes it a whole number of days +-1 h.
        for sub in map(self.on_plan, ("business-fup", "home-100g")):
            with self.subTest(dst_cycle_of=sub):
                cycles = self.past[sub] + [self.current[sub]]
                self.assertTrue(any((b - a) % datetime.timedelta(days=1) for a, b in cycles), cycles)
        # The date a business-fup cycle starts on (the 15th, 06:00 New York) names that cycle.
        sub = self.on_plan("business-fup")
        day = iso(self.current[sub][0])[:10]
        row = [r for r in self.export(f"&cycle={day}", limit=1000, csv_too=False) if r["subscriber_id"] == sub][0]
        want = self.expected(sub, self.current[sub])
        self.assertEqual({k: row[k] for k in want}, want)

    def test_range_export_across_boundaries_and_dst(self):
        """from/to over every stored hour (the cycle boundaries, the DST changes): the hourly and
        the daily rows equal the stored hourly rows, per subscriber and UTC hour or day."""
        day = lambda t: t.replace(hour=0, minute=0, second=0)  # noqa: E731
        hours = [h for (_, h, _) in self.stored.hours]
        rng = f"&from={iso(day(min(hours)))}&to={iso(day(max(hours)) + datetime.timedelta(days=1))}"
        hourly = self.export(rng + "&granularity=hour", limit=7)
        daily = self.export(rng + "&granularity=day", limit=5)
        for rows, bucket, length in ((hourly, lambda t: t, HOUR), (daily, day, datetime.timedelta(days=1))):
            with self.subTest(granularity=length):
                mine = [r for r in rows if r["subscriber_id"] in self.subs]
                got = {(r["subscriber_id"], r["start"]): {k: r[k] for k in COUNTERS} for r in mine}
                self.assertEqual(len(got), len(mine), "a bucket was repeated")
                self.assertEqual(got, self.stored.buckets(self.subs, bucket))
                for r in mine:
                    self.assertEqual((utc(r["end"]) - utc(r["start"]), r["plan"]), (length, self.subs[r["subscriber_id"]]))
        stored = self.db.query(f"SELECT sum(up_bytes), sum(down_bytes) FROM usage_hourly WHERE hour >= "
                               f"'{iso(day(min(hours)))}' AND hour < '{iso(day(max(hours)) + datetime.timedelta(days=1))}'")[0]
        for rows in (hourly, daily):
            self.assertEqual([str(sum(r["up_bytes"] for r in rows)), str(sum(r["down_bytes"] for r in rows))], stored)
        self.assertEqual(self.export(rng + "&granularity=hour", limit=1000, csv_too=False), hourly)
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
        # Usage is written to a subscriber of this test only (the others' rows are the
        # ground truth of the tests above), which sorts after every cyc- page.
        self.create("cyd-writer")
        write = ("INSERT INTO usage_period AS u (subscriber_id, period_start, period_end, gateway_id, up_bytes) "
                 "SELECT id, date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', "
                 "(date_trunc('month', now() AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC', "
                 "'gw-a', 1 FROM subscribers WHERE external_id = 'cyd-writer' AND removed_at IS NULL "
                 "ON CONFLICT (subscriber_id, period_start, gateway_id) DO UPDATE SET "
                 "up_bytes = u.up_bytes + 1, updated_at = now()")
        first = self.billing.get(USAGE + "?limit=3").json()
        cursor = first["next_cursor"]
        seen = [r["subscriber_id"] for r in first["items"]]
        n = 0
        while cursor:
            self.db.exec(write)
            self.admin.post(SUBS, {"id": f"cyc-0-new-{n}"})  # sorts before the cursor
            n += 1
            r = self.billing.get(USAGE + f"?limit=3&cursor={urllib.parse.quote(cursor)}")
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json()["as_of"], first["as_of"])  # pinned
            seen += [x["subscriber_id"] for x in r.json()["items"]]
            cursor = r.json()["next_cursor"]
        self.assertEqual(len(seen), len(set(seen)), "a row was repeated")
        self.assertEqual(set(self.subs) - set(seen), set())
        self.assertIn("cyd-writer", seen)

    def test_q_finds_by_address(self):
        self.assertEqual(self.admin.post(SUBS, {"id": "addr-find", "addresses": ["100.64.77.0/24",
                                                                                   "2001:db8:77::/48"]}).status, 201)
        for q, found in (("100.64.77.9", True), ("2001:db8:77:1::5", True), ("100.64.78.9", False),
                         ("2001:db8:78::5", False), ("100.64.77.0/24", True), ("addr-FIND", True)):
            with self.subTest(q=q):
                ids = [x["id"] for x in self.billing.get(SUBS + "?q=" + urllib.parse.quote(q)).json()["items"]]
                self.assertEqual("addr-find" in ids, found, ids)
