#!/usr/bin/env python3
"""The web suite's world, then the browser tests in it.

Builds, and always removes again (on failure and on SIGTERM/SIGINT too):
  * the npm packages of tests/web (npm ci into the build directory; the npm
    cache makes it offline after the first run; no browser is downloaded),
  * a fresh database on CTQUOTA_TEST_DB_URL with seeded subscribers, usage,
    states, events and a tiny plan (SQL, where the API has no route yet),
  * the netns topology of tests/netns (subscribers -> gateway -> servers) with
    ctquotad in the gateway namespace serving the API and the web page
    ([api] web_dir set explicitly),
  * real UDP traffic from two subscribers through the gateway,
  * two subscribers on shipped plans with cycles of their own (home-100g:
    the month in Europe/Berlin; prepaid-10g: 30 days from activation), set
    through the API, with usage stored in those cycles,
then runs web.test.mjs (node's test runner, playwright-core driving Debian's
/usr/bin/chromium) inside the gateway namespace: the page is reached on
127.0.0.1 and there is no route to the internet at all.

Run as root with CTQUOTA_TEST_DB_URL, CTQUOTA_BIN and CTQWEB_WORK set (CTest
does it); screenshots land in $CTQWEB_WORK/artifacts.
"""

import json
import os
import shutil
import subprocess
import sys
import uuid

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "netns"))
import topology as T  # noqa: E402
from daemon_harness import build_url  # noqa: E402

API = "127.0.0.1:8460"
SEEDED = 30  # web-sub-01 .. web-sub-30: more than one page of 25
TINY_QUOTA = 100_000  # web-blocked's plan: blocked past 100 kB
TINY_PLAN = {
    "name": "web-tiny", "description": "web test: blocked past 100 kB",
    "cycle": {"kind": "monthly", "day": 1, "time": "00:00", "time_zone": "UTC"},
    "counts": "both", "quota_bytes": TINY_QUOTA, "warn_percent": [80],
    "tiers": [{"at_percent": 100, "action": "block"}],
    "free_windows": [], "zero_rated": [], "always_allowed": [],
}
# Subscribers whose plan's cycle is not the UTC month: {id: (address, plan, up, down)}.
OWN_CYCLES = {"web-home": ("100.64.103.1/32", "home-100g", 2_000_000_000, 9_000_000_000),
              "web-prepaid": ("100.64.103.2/32", "prepaid-10g", 50_000_000, 400_000_000)}
# Their current cycles, computed in SQL here (not by ctquotad): the month in
# Berlin, and 30 x 24 h counted from created_at.
CYCLE_SQL = {
    "home-100g": ("date_trunc('month', now() AT TIME ZONE 'Europe/Berlin') AT TIME ZONE 'Europe/Berlin'",
                  "(date_trunc('month', now() AT TIME ZONE 'Europe/Berlin') + interval '1 month') "
                  "AT TIME ZONE 'Europe/Berlin'"),
    "prepaid-10g": ("created_at + floor(extract(epoch FROM now() - created_at) / 2592000) * interval '720 hours'",
                    "created_at + (floor(extract(epoch FROM now() - created_at) / 2592000) + 1) "
                    "* interval '720 hours'"),
}
ISO = "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'"


def npm_ci(work):
    """playwright-core from the pinned lock file, into work/npm/node_modules."""
    npm_dir = os.path.join(work, "npm")
    os.makedirs(npm_dir, exist_ok=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copyfile(os.path.join(HERE, name), os.path.join(npm_dir, name))
    env = dict(os.environ, PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD="1", npm_config_update_notifier="false")
    T.sh(["npm", "ci", "--prefer-offline", "--no-audit", "--no-fund", "--ignore-scripts"],
         cwd=npm_dir, env=env, timeout=300)
    return npm_dir


def sql(url, text):
    return T.sh(["psql", url, "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", text]).stdout


def has_table(url, name):
    return sql(url, f"SELECT to_regclass('public.{name}') IS NOT NULL").strip() == "t"


def seed(url, cli):
    """Subscribers for paging and the top 10; a few states and events."""
    for i in range(1, SEEDED + 1):
        cli("subscriber", "add", f"web-sub-{i:02d}", "--address", f"100.64.100.{i}/32")
    cli("subscriber", "add", "web-fail", "--address", "100.64.101.1/32")
    month = "date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
    hour = "date_trunc('hour', now())"
    for i in range(1, 13):  # usage for web-sub-01..12, growing: the top 10 is 12..03
        up, down = i * 1_000_000, i * 7_000_000
        for table, when in (("usage_period", f"period_start, gateway_id, up_bytes, down_bytes, up_packets, down_packets) SELECT id, {month}"),
                            ("usage_hourly", f"hour, gateway_id, up_bytes, down_bytes, up_packets, down_packets) SELECT id, {hour}")):
            sql(url, f"INSERT INTO {table} (subscriber_id, {when}, 'gw-seed', {up}, {down}, {i}, {i} "
                     f"FROM subscribers WHERE external_id = 'web-sub-{i:02d}'")
    if has_table(url, "subscriber_state"):
        for sub, state, rate in (("web-sub-01", "throttled", "1000000"), ("web-sub-02", "throttled", "1000000"),
                                 ("web-sub-03", "blocked", "NULL")):
            sql(url, "INSERT INTO subscriber_state (subscriber_id, state, down_bps, up_bps, reason, since) "
                     f"SELECT id, '{state}', {rate}, {rate}, 'seeded by the web test', now() - interval '2 hours' "
                     f"FROM subscribers WHERE external_id = '{sub}'")
            sql(url, "INSERT INTO enforcement_events (subscriber_id, at, kind, from_state, to_state, reason) "
                     f"SELECT id, now() - interval '2 hours', 'state', 'normal', '{state}', 'seeded by the web test' "
                     f"FROM subscribers WHERE external_id = '{sub}'")
    if has_table(url, "plans"):
        sql(url, "INSERT INTO plans (name, definition, source) VALUES "
                 f"('web-tiny', '{json.dumps(TINY_PLAN)}', 'api') ON CONFLICT DO NOTHING")
        sql(url, "UPDATE subscribers SET plan = 'web-tiny' WHERE external_id = 'web-blocked'")


def seed_own_cycles(url, cli):
    """Before the daemon starts: the subscribers; web-prepaid activated 45 days ago."""
    for sub, (address, _, _, _) in OWN_CYCLES.items():
        cli("subscriber", "add", sub, "--address", address)
    sql(url, "UPDATE subscribers SET created_at = date_trunc('second', now()) - interval '45 days' "
             "WHERE external_id = 'web-prepaid'")


def plan_own_cycles(topo, url, admin):
    """With the daemon running: each one's plan through the API, then usage in
    its current cycle stored as a flush would (usage_period with period_end,
    usage_hourly in this UTC hour). Returns {id: {plan, start, end, up, down}}."""
    out = {}
    hour = "date_trunc('hour', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
    for sub, (_, plan, up, down) in OWN_CYCLES.items():
        T.sh(["ip", "netns", "exec", topo.gw, "curl", "-fsS", "-X", "PUT", "-H", f"Authorization: Bearer {admin}",
              "-H", "Content-Type: application/json", "-d", json.dumps({"plan": plan}),
              f"http://{API}/api/v1/subscribers/{sub}"])
        start, end = CYCLE_SQL[plan]
        where = f"FROM subscribers WHERE external_id = '{sub}' AND removed_at IS NULL"
        sql(url, "INSERT INTO usage_period (subscriber_id, period_start, period_end, gateway_id, up_bytes, "
                 f"down_bytes, up_packets, down_packets) SELECT id, {start}, {end}, 'gw-seed', {up}, {down}, "
                 f"{up // 1000}, {down // 1400} {where}")
        sql(url, "INSERT INTO usage_hourly (subscriber_id, hour, gateway_id, up_bytes, down_bytes, up_packets, "
                 f"down_packets) SELECT id, {hour}, 'gw-seed', {up}, {down}, {up // 1000}, {down // 1400} {where}")
        bounds = sql(url, f"SELECT to_char(({start}) AT TIME ZONE 'UTC', {ISO}), "
                          f"to_char(({end}) AT TIME ZONE 'UTC', {ISO}) {where}").strip().split("|")
        out[sub] = {"plan": plan, "start": bounds[0], "end": bounds[1], "up": up, "down": down}
    return out


def traffic(topo, url):
    """UDP request/reply flows: from web-traffic (waits until the daemon has
    stored exactly the ground truth, returned as {subscriber: {up, down}}),
    then from web-blocked, about 200 kB against its 100 kB plan: the policy
    engine may block it midway, so its replies may be lost."""
    plan = [{"src": topo.sub_v4[0], "packets": 120, "req": [200, 64, 900], "reply": [1200, 1400, 300]}
            for _ in range(3)]
    truth = T.udp_traffic(topo, plan, window=8)
    if truth["lost_replies"]:
        raise RuntimeError(f"{truth['lost_replies']} UDP replies lost: the ground truth is uncertain")
    mine = truth["subscribers"][topo.sub_v4[0]]
    want = {"web-traffic": {"up": mine["up_bytes"], "down": mine["down_bytes"]}}

    def stored():
        rows = sql(url, "SELECT up_bytes, down_bytes FROM usage_current WHERE subscriber_id = 'web-traffic'")
        return rows.strip() == f"{mine['up_bytes']}|{mine['down_bytes']}"
    T.wait_until(stored, 60, interval=0.25, what=f"ctquotad to store the traffic {want}")
    plan = [{"src": topo.sub_v4[1], "packets": 40, "req": 200, "reply": 1400} for _ in range(3)]
    T.udp_traffic(topo, plan, window=3, timeout=0.3)
    return want


def main():
    work = os.environ["CTQWEB_WORK"]
    binary = os.environ["CTQUOTA_BIN"]
    base = os.environ.get("CTQUOTA_TEST_DB_URL")
    if not base:
        raise SystemExit("CTQUOTA_TEST_DB_URL is not set (tests/run.sh starts PostgreSQL and sets it)")
    for tool in ("node", "npm", "/usr/bin/chromium"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing: run deploy/install-deps.sh")
    artifacts = os.path.join(work, "artifacts")
    shutil.rmtree(artifacts, ignore_errors=True)
    os.makedirs(artifacts)
    npm_dir = npm_ci(work)

    dbname = "web_" + uuid.uuid4().hex[:12]
    url = build_url(base, dbname)
    T.sh(["psql", base, "-qc", f'CREATE DATABASE "{dbname}"'])
    topo = None
    try:
        topo = T.Topology(n_v4=2, n_v6=0).create()
        config = os.path.join(topo.workdir, "ctquotad.toml")
        with open(config, "w") as f:
            f.write(f'[database]\nurl = "{url}"\n'
                    '[conntrack]\npoll_interval = "1s"\nevent_buffer_bytes = "16MiB"\n'
                    '[accounting]\nflush_interval = "250ms"\ngateway_id = "gw-web-test"\n'
                    f'[api]\nlisten = "{API}"\nweb_dir = "{os.path.join(ROOT, "web")}"\n'
                    f'[policies]\ndir = "{os.path.join(ROOT, "policies")}"\n')

        def cli(*args):
            return T.sh([binary, "--config", config] + list(args))
        cli("migrate")
        cli("subscriber", "add", "web-traffic", "--address", f"{topo.sub_v4[0]}/32")
        cli("subscriber", "add", "web-blocked", "--address", f"{topo.sub_v4[1]}/32")
        seed(url, cli)
        seed_own_cycles(url, cli)
        admin = cli("token", "create", "--role", "admin", "--name", "web-admin").stdout.strip()
        billing = cli("token", "create", "--role", "billing", "--name", "web-billing").stdout.strip()
        daemon = topo.start_in(topo.gw, [binary, "--config", config], name="ctquotad", capture=False)

        def running():
            with open(daemon.log_path, "rb") as f:
                return b"ctquotad running" in f.read() or not daemon.alive()
        T.wait_until(running, 30, what="ctquotad to start")
        if not daemon.alive():
            raise RuntimeError(f"ctquotad exited at start:{daemon.tail()}")
        want = traffic(topo, url)
        own_cycles = plan_own_cycles(topo, url, admin)
        env = dict(os.environ, CTQWEB_BASE=f"http://{API}", CTQWEB_ADMIN=admin, CTQWEB_BILLING=billing,
                   CTQWEB_DB_URL=url, CTQWEB_ARTIFACTS=artifacts, CTQWEB_NODE_MODULES=npm_dir,
                   CTQWEB_TRAFFIC=json.dumps(want), CTQWEB_OWN_CYCLES=json.dumps(own_cycles),
                   CTQWEB_TINY_QUOTA=str(TINY_QUOTA))
        r = subprocess.run(["ip", "netns", "exec", topo.gw, "node", "--test-reporter=spec",
                            os.path.join(HERE, "web.test.mjs")], env=env, timeout=600)
        if r.returncode != 0:
            print(f"ctquotad log:{daemon.tail(40)}", file=sys.stderr)
        return r.returncode
    finally:
        if topo is not None:
            topo.destroy()
        T.sh(["psql", base, "-qc", f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)'], check=False)


if __name__ == "__main__":
    sys.exit(main())
