#!/usr/bin/env python3
"""GET /api/v1/nat-lookup against a large flow log: N flow records (default
10 million) made with SQL over 30 day partitions, 100k subscribers behind 4
public addresses (about 40 records per public address and port), ctquotad
in a throwaway network namespace (api_bench.py's World), then wrk over a list
of lookups, half of them of a connection at a moment of its life (hits), half
of a port and time nobody used (misses): requests/s, p50, p99; median of
--runs runs. Before that, a sample of lookups is checked: every hit names its
connection's subscriber, every miss is empty.

  CTQUOTA_TEST_DB_URL=$(deploy/pg-throwaway.sh start /tmp/pgb 54344) \\
    python3 tests/bench/nat_lookup_bench.py --bin build-rel/daemon/ctquotad [--smoke]

Target: p99 < 100 ms with 10 million records (wrk, 4 connections). --smoke:
50k records, one short run, the checks only.
"""

import json
import os
import random
import sys
import time
from datetime import datetime, timedelta, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "netns"))
from api_bench import PORT, World, bench_args, open_world, wrk_series  # noqa: E402
from nsproc import sh  # noqa: E402

DAYS = 30
SUBSCRIBERS = 100_000
PUBLIC = 4  # 198.18.1.1 .. 198.18.1.4

LUA = r"""
local paths = {}
for line in io.lines(os.getenv("BENCH_PATHS")) do paths[#paths + 1] = line end
local auth = "Bearer " .. os.getenv("BENCH_TOKEN")
function init(args)
  math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16) % 1000003)
end
function request()
  return wrk.format("GET", paths[math.random(1, #paths)], {["Authorization"] = auth})
end
"""


def populate(url, n):
    """n connections over DAYS days ending now: record i starts at a steady
    pace, lasts (i % 600) s, holds public address 198.18.1.(1 + i % 4) and
    port 1024 + (i * 7919) % 64000 (spread, reused about 40 times over the
    days), subscriber 1 + i % 100k; one in ten has an interim record too."""
    started = time.monotonic()
    now = datetime.now(timezone.utc).replace(microsecond=0)
    first = (now - timedelta(days=DAYS)).date()
    parts = "".join(
        f"CREATE TABLE flow_log_p{d:%Y%m%d} PARTITION OF flow_log FOR VALUES FROM ('{d}') TO "
        f"('{d + timedelta(days=1)}');\n"
        for d in (first + timedelta(days=k) for k in range(DAYS + 2)))
    span = DAYS * 86400 - 700
    sh(["psql", url, "-Xq", "-v", "ON_ERROR_STOP=1", "-c", f"""
        BEGIN;
        {parts}
        INSERT INTO subscribers (external_id)
            SELECT 'sub-' || lpad(g::text, 6, '0') FROM generate_series(1, {SUBSCRIBERS}) g;
        CREATE TEMP TABLE c AS SELECT g,
            timestamptz '{now.isoformat()}' - interval '{DAYS} days'
                + (g::float8 / {n} * {span}) * interval '1 second' AS t0,
            (g % 600) * interval '1 second' AS d
          FROM generate_series(0, {n} - 1) g;
        INSERT INTO flow_log (gateway_id, flow_end, flow_start, final, start_first_seen,
            subscriber_id, direction, l4proto, orig_src, orig_sport, orig_dst, orig_dport,
            reply_src, reply_sport, reply_dst, reply_dport, public_address, public_port,
            orig_bytes, orig_packets, reply_bytes, reply_packets, conntrack_id, flow_id)
          SELECT 'gw-bench', t0 + d, t0, true, false, 1 + g % {SUBSCRIBERS}, 1, 6,
                 '100.64.0.0'::inet + g % {SUBSCRIBERS}, 1024 + g % 60000,
                 '198.18.2.0'::inet + g % 250, 443, '198.18.2.0'::inet + g % 250, 443,
                 '198.18.1.1'::inet + g % {PUBLIC}, 1024 + (g::bigint * 7919) % 64000,
                 '198.18.1.1'::inet + g % {PUBLIC}, 1024 + (g::bigint * 7919) % 64000,
                 1000 + g % 99999, 10, 5000, 8, g, g
            FROM c
          UNION ALL
          SELECT 'gw-bench', t0 + d / 2, t0, false, false, 1 + g % {SUBSCRIBERS}, 1, 6,
                 '100.64.0.0'::inet + g % {SUBSCRIBERS}, 1024 + g % 60000,
                 '198.18.2.0'::inet + g % 250, 443, '198.18.2.0'::inet + g % 250, 443,
                 '198.18.1.1'::inet + g % {PUBLIC}, 1024 + (g::bigint * 7919) % 64000,
                 '198.18.1.1'::inet + g % {PUBLIC}, 1024 + (g::bigint * 7919) % 64000,
                 500, 5, 2500, 4, g, g
            FROM c WHERE g % 10 = 0 AND g < {n} * 10 / 11;
        COMMIT;
        ANALYZE flow_log;"""], timeout=7200)
    return time.monotonic() - started, now


def iso(t):
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def lookups(url, count, seed=7):
    """(checked, load): checked = (path, expected subscriber or None) pairs, a
    hit inside a sampled connection and a miss on port 1023 (below every port
    used); load = those hits and, as misses, the same address and port an hour
    before the connection (someone else's, or nobody's, as it happens)."""
    rnd = random.Random(seed)
    rows = sh(["psql", url, "-XAtF", "\t", "-c",
               "SELECT host(public_address), public_port, flow_start, flow_end, "
               "'sub-' || lpad(subscriber_id::text, 6, '0') FROM flow_log WHERE final "
               f"ORDER BY random() LIMIT {count}"]).stdout.splitlines()
    checked, load = [], []
    for line in rows:
        addr, port, start, end, sub = line.split("\t")
        t0 = datetime.fromisoformat(start.replace(" ", "T"))
        t1 = datetime.fromisoformat(end.replace(" ", "T"))
        at = t0 + (t1 - t0) * rnd.random()
        at = at.replace(microsecond=at.microsecond // 1000 * 1000)
        if at < t0:
            at = t0
        hit = f"/api/v1/nat-lookup?address={addr}&port={port}&at={iso(at)}"
        checked += [(hit, sub), (f"/api/v1/nat-lookup?address={addr}&port=1023&at={iso(at)}", None)]
        load += [hit, f"/api/v1/nat-lookup?address={addr}&port={port}&at={iso(at - timedelta(hours=1))}"]
    return checked, load


CHECK = r"""
import json, sys, urllib.request
token = sys.argv[1]
bad = 0
for line in sys.stdin:
    path, want = json.loads(line)
    req = urllib.request.Request("http://127.0.0.1:%d" + path, headers={"Authorization": "Bearer " + token})
    with urllib.request.urlopen(req, timeout=30) as r:
        items = json.loads(r.read())["items"]
    subs = [i["subscriber_id"] for i in items]
    if (want is None and subs) or (want is not None and want not in subs):
        bad += 1
        print("wrong:", path, want, subs, file=sys.stderr)
print(json.dumps({"bad": bad}))
""" % PORT


class LookupWorld(World):
    def populate(self):
        self.populate_s, self.now = populate(self.url, self.n)


def main():
    args = bench_args(4, records=(int, 10_000_000)).parse_args()
    if args.smoke:
        args.records, args.runs, args.duration = 50_000, 1, 2
    world = open_world(LookupWorld, args.bin, args.records, "nat_lookup_bench.py")
    if world is None:
        return 1
    try:
        world.build()
        rows = sh(["psql", world.url, "-XAtc", "SELECT count(*), pg_total_relation_size('flow_log') "
                   "+ (SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0) FROM pg_inherits "
                   "WHERE inhparent = 'flow_log'::regclass) FROM flow_log"]).stdout.strip().split("|")
        print(f"{int(rows[0])} flow records ({int(rows[1]) / 2**30:.2f} GiB with indexes) made "
              f"with SQL in {world.populate_s:.0f} s")
        pairs, load = lookups(world.url, 200 if args.smoke else 2000)
        check = world.in_ns([sys.executable, "-c", CHECK, world.token],
                            input="".join(json.dumps(p) + "\n" for p in pairs[:400]), timeout=600)
        bad = json.loads(check.stdout)["bad"]
        print(f"checked {min(400, len(pairs))} lookups: {bad} wrong")
        paths = os.path.join(world.dir, "paths.txt")
        with open(paths, "w") as f:
            f.write("".join(p + "\n" for p in load))
        script = os.path.join(world.dir, "lookups.lua")
        with open(script, "w") as f:
            f.write(LUA)
        os.environ["BENCH_PATHS"] = paths
        runs, median = wrk_series(world, script, args,
                                  f"GET /api/v1/nat-lookup, {args.records} records", "lookups/s")
        if bad or any(r["non2xx"] for r in runs):
            print("FAIL: wrong answers or non-2xx")
            return 1
        if not args.smoke and median["p99"] >= 100:
            print("target missed: p99 < 100 ms")
            return 2
        return 0
    finally:
        world.close()


if __name__ == "__main__":
    sys.exit(main())
