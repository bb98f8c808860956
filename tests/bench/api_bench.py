#!/usr/bin/env python3
"""REST API benchmark: N subscribers (default 100k) made with SQL in a
throwaway database, ctquotad in a throwaway network namespace, then
  1. wrk against GET /api/v1/subscribers/{id} over random ids (a Lua script,
     bearer token): requests/s, p50 and p99 latency; median of --runs runs;
  2. a bulk export of every subscriber through /api/v1/usage cursor pages:
     time, and ctquotad's RSS before and its peak (VmHWM) from /proc.

  CTQUOTA_TEST_DB_URL=$(deploy/pg-throwaway.sh start /tmp/pgb 54344) \\
    python3 tests/bench/api_bench.py --bin build-rel/daemon/ctquotad [--smoke]

Targets: >= 10k requests/s and p99 < 20 ms on the 2-core VM. Needs root (the
namespace) and wrk. --smoke: 2k subscribers, one short run, no targets.
Everything it makes is removed again, also on failure and on SIGTERM/SIGINT.
"""

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "netns"))
from daemon_harness import build_url  # noqa: E402
from nsproc import sh, wait_until  # noqa: E402
from e2e_bench import cpu_seconds, pg_dir_of, postgres_cpu  # noqa: E402

PORT = 8460
LUA = r"""
local n = tonumber(os.getenv("BENCH_N"))
local auth = "Bearer " .. os.getenv("BENCH_TOKEN")
function init(args)
  -- one seed per thread: the table's address differs between threads
  math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16) % 1000003)
end
function request()
  local path = string.format("/api/v1/subscribers/sub-%06d", math.random(1, n))
  return wrk.format("GET", path, {["Authorization"] = auth})
end
"""


def populate(url, n):
    """n subscribers with an IPv4 /32 each and this month's usage row, in one transaction."""
    started = time.monotonic()
    sh(["psql", url, "-Xq", "-v", "ON_ERROR_STOP=1", "-c", f"""
        BEGIN;
        INSERT INTO subscribers (external_id)
            SELECT 'sub-' || lpad(g::text, 6, '0') FROM generate_series(1, {n}) g;
        INSERT INTO subscriber_bindings (subscriber_id, prefix)
            SELECT id, set_masklen('100.64.0.0'::inet + id, 32)::cidr FROM subscribers;
        INSERT INTO usage_period (subscriber_id, period_start, gateway_id, up_bytes, down_bytes,
                                  up_packets, down_packets)
            SELECT id, date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', 'gw-bench',
                   id * 1000, id * 5000, id, id * 4 FROM subscribers;
        COMMIT;
        ANALYZE;"""], timeout=600)
    return time.monotonic() - started


class World:
    """Database + namespace + daemon; close() removes all of it."""

    def __init__(self, binary, n):
        self.binary, self.n = binary, n
        self.base_url = os.environ.get("CTQUOTA_TEST_DB_URL")
        if not self.base_url:
            raise RuntimeError("CTQUOTA_TEST_DB_URL is not set (start deploy/pg-throwaway.sh)")
        self.ns = f"ctqbench-{os.getpid()}"
        self.dbname = "apibench_" + uuid.uuid4().hex[:10]
        self.url = build_url(self.base_url, self.dbname)
        self.dir = tempfile.mkdtemp(prefix="ctquota-api-bench-")
        self.config = os.path.join(self.dir, "ctquotad.toml")
        self.log_path = os.path.join(self.dir, "ctquotad.log")
        self.proc = None
        self.db_created = self.ns_created = False

    def build(self):
        sh(["psql", self.base_url, "-qc", f'CREATE DATABASE "{self.dbname}"'])
        self.db_created = True
        with open(self.config, "w") as f:
            f.write(self.config_text())
        self.cli("migrate")
        self.populate()
        self.token = self.cli("token", "create", "--role", "billing").stdout.strip()
        sh(["ip", "netns", "add", self.ns])
        self.ns_created = True
        self.prepare_namespace()
        self.start_daemon()

    def populate(self):
        """The data the benchmark reads (subclasses bring their own)."""
        self.populate_s = populate(self.url, self.n)

    def config_text(self):
        return (f'[database]\nurl = "{self.url}"\n[accounting]\ngateway_id = "gw-bench"\n'
                f'[api]\nlisten = "127.0.0.1:{PORT}"\n')

    def prepare_namespace(self):
        sh(["ip", "-n", self.ns, "link", "set", "lo", "up"])
        sh(["ip", "netns", "exec", self.ns, "nft", "-f", "-"],
           input="add table inet t\nadd chain inet t c { type filter hook prerouting priority 0; }\n"
                 "add rule inet t c ct state new accept\n")

    def start_daemon(self):
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(["ip", "netns", "exec", self.ns, self.binary, "--config", self.config],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        wait_until(lambda: "ctquotad running" in open(self.log_path).read() or self.proc.poll() is not None,
                   timeout=120, what="ctquotad to start")
        if self.proc.poll() is not None:
            raise RuntimeError("ctquotad exited:\n" + open(self.log_path).read())

    def stop_daemon(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def cli(self, *args):
        return sh([self.binary, "--config", self.config] + list(args))

    def in_ns(self, argv, **kw):
        return sh(["ip", "netns", "exec", self.ns] + argv, **kw)

    def status(self, field):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
        return 0

    def close(self):
        self.stop_daemon()
        if self.ns_created:
            sh(["ip", "netns", "del", self.ns], check=False)
            self.ns_created = False
        if self.db_created:
            sh(["psql", self.base_url, "-qc", f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)'],
               check=False)
            self.db_created = False
        sh(["rm", "-rf", self.dir], check=False)


def to_ms(text):
    value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(world, script, args, duration):
    pg_dir = pg_dir_of(world.base_url)
    cpu0, pg0 = cpu_seconds(world.proc.pid), postgres_cpu(pg_dir)
    r = world.in_ns(["env", f"BENCH_N={world.n}", f"BENCH_TOKEN={world.token}", "wrk",
                     f"-t{args.threads}", f"-c{args.connections}", f"-d{duration}s", "--latency",
                     "-s", script, f"http://127.0.0.1:{PORT}"], timeout=duration + 60)
    out = r.stdout
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50": to_ms(re.search(r"\s50%\s+(\S+)", out).group(1)),
            "p99": to_ms(re.search(r"\s99%\s+(\S+)", out).group(1)),
            "ctquotad_cpu": (cpu_seconds(world.proc.pid) - cpu0) / duration,
            "postgres_cpu": (postgres_cpu(pg_dir) - pg0) / duration,
            "non2xx": int(bad.group(1)) if bad else 0,
            "socket_errors": errors.group(1) if errors else ""}


def wrk_series(world, script, args, what, unit="req/s"):
    """A warm-up run, then --runs runs of --duration s, each printed; returns
    (runs, median of rps, p50, p99)."""
    wrk(world, script, args, 2 if args.smoke else 5)  # warm-up: connections, caches
    runs = []
    for i in range(args.runs):
        r = wrk(world, script, args, args.duration)
        runs.append(r)
        print(f"run {i + 1}: {r['rps']:.0f} {unit}, p50 {r['p50']:.2f} ms, p99 {r['p99']:.2f} ms, "
              f"CPU ctquotad {r['ctquotad_cpu']:.2f} PostgreSQL {r['postgres_cpu']:.2f} cores, "
              f"non-2xx {r['non2xx']} {r['socket_errors']}")
    median = {k: statistics.median(r[k] for r in runs) for k in ("rps", "p50", "p99")}
    print(f"{what}, {args.connections} connections, {args.threads} wrk threads, median of "
          f"{len(runs)}: {median['rps']:.0f} {unit}, p50 {median['p50']:.2f} ms, "
          f"p99 {median['p99']:.2f} ms")
    return runs, median


def bench_args(connections, **defaults):
    """The options every API benchmark takes; `defaults` adds its own (name=(type, value))."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="build-rel/daemon/ctquotad")
    for name, (kind, value) in defaults.items():
        ap.add_argument("--" + name, type=kind, default=value)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--connections", type=int, default=connections)
    ap.add_argument("--smoke", action="store_true")
    return ap


def open_world(cls, binary, n, name):
    """A World of `cls` that is removed on SIGTERM/SIGINT too; None when not root."""
    if os.geteuid() != 0:
        print(f"{name} needs root (a network namespace)", file=sys.stderr)
        return None
    world = cls(os.path.abspath(binary), n)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda s, _f: (world.close(), sys.exit(128 + s)))
    return world


EXPORT = r"""
import json, sys, time, urllib.request
token, limit = sys.argv[1], int(sys.argv[2])
rows, pages, cursor, t0 = 0, 0, None, time.monotonic()
while True:
    url = f"http://127.0.0.1:%d/api/v1/usage?limit={limit}" + (f"&cursor={cursor}" if cursor else "")
    req = urllib.request.Request(url, headers={"Authorization": "Bearer " + token})
    with urllib.request.urlopen(req, timeout=60) as r:
        body = json.loads(r.read())
    rows += len(body["items"]); pages += 1; cursor = body["next_cursor"]
    if cursor is None:
        break
print(json.dumps({"rows": rows, "pages": pages, "seconds": time.monotonic() - t0}))
""" % PORT


def export(world, limit):
    rss_before = world.status("VmRSS")
    r = world.in_ns([sys.executable, "-c", EXPORT, world.token, str(limit)], timeout=600)
    result = json.loads(r.stdout)
    result.update(rss_before_mib=rss_before / 2**20, peak_rss_mib=world.status("VmHWM") / 2**20,
                  limit=limit)
    return result


def main():
    args = bench_args(8, subscribers=(int, 100_000)).parse_args()
    if args.smoke:
        args.subscribers, args.runs, args.duration = 2000, 1, 2
    world = open_world(World, args.bin, args.subscribers, "api_bench.py")
    if world is None:
        return 1
    try:
        world.build()
        print(f"{args.subscribers} subscribers made with SQL in {world.populate_s:.1f} s")
        script = os.path.join(world.dir, "random_ids.lua")
        with open(script, "w") as f:
            f.write(LUA)
        runs, median = wrk_series(world, script, args, "GET /api/v1/subscribers/{id}")
        for limit in (1000, 10000):
            e = export(world, limit)
            print(f"export: {e['rows']} rows in {e['pages']} pages of {limit}: {e['seconds']:.2f} s "
                  f"({e['rows'] / e['seconds']:.0f} rows/s); ctquotad RSS {e['rss_before_mib']:.0f} MiB "
                  f"before, peak {e['peak_rss_mib']:.0f} MiB")
            if e["rows"] != args.subscribers:
                print("FAIL: the export did not return every subscriber")
                return 1
        if any(r["non2xx"] for r in runs):
            print("FAIL: non-2xx answers during the benchmark")
            return 1
        if not args.smoke and (median["rps"] < 10_000 or median["p99"] >= 20):
            print("target missed: >= 10k req/s and p99 < 20 ms")
            return 2
        return 0
    finally:
        world.close()


if __name__ == "__main__":
    sys.exit(main())
