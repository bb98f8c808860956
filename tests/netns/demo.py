#!/usr/bin/env python3
"""The ctquota demo (started by deploy/demo.sh, which builds ctquotad first).

A throwaway PostgreSQL, a subscribers -> gateway -> servers set of network
namespaces (tests/netns/topology.py), ctquotad in the gateway namespace with
the shipped plans (policies/) and enforcement on the subscriber-facing
interface, eight subscribers created through the REST API (IPv4 addresses,
IPv6 prefixes, one with both; plans home-100g, prepaid-10g, business-fup,
night-free, unlimited), and continuous mixed traffic: long paced TCP
connections and UDP request/reply flows at different rates per subscriber.
Two subscribers get a tiny quota for this cycle, so within a minute alice is
throttled (home-100g: 2 Mbit/s down, 1 Mbit/s up) and bob is blocked
(prepaid-10g: only the portal and DNS). Every few seconds it prints usage,
rates and state per subscriber. The API and the web admin page are forwarded
to the host's loopback (http://127.0.0.1:8460/ by default; an admin token is
printed). Ctrl-C (or --duration) stops the traffic, stops ctquotad (which
flushes), prints the final totals and removes everything: processes,
namespaces, the database cluster, ctquotad's nftables table and qdiscs (they
live in the gateway namespace).

    python3 tests/netns/demo.py --bin build-demo/daemon/ctquotad [--duration S]
        [--interval S] [--pg-url URL] [--web-port PORT]

With --duration the exit status says whether it worked: 0 when ctquotad
stopped cleanly, every subscriber's usage grew, the REST API lists it and
(given at least 40 s) alice ended throttled and bob blocked.
"""

import argparse
import json
import os
import signal
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import topology as T  # noqa: E402

# name, addresses (by index into the topology's lists), TCP up/down rate
# (bytes/s, 0 = no TCP), UDP flows (count, packets, gap s, request, reply)
SUBSCRIBERS = [
    ("alice", [("v4", 0)], (100_000, 400_000), (2, 200, 0.05, 200, 1200)),
    ("bob", [("v4", 1)], (50_000, 400_000), (1, 100, 0.1, 64, 1400)),
    ("carol", [("v4", 2)], (0, 0), (4, 300, 0.03, 100, 900)),
    ("dave", [("v4", 3)], (120_000, 30_000), (0, 0, 0, 0, 0)),
    ("erin", [("v4", 4), ("v6", 0)], (200_000, 200_000), (2, 150, 0.08, 500, 500)),
    ("frank", [("v6", 1)], (300_000, 80_000), (1, 100, 0.1, 1000, 100)),
    ("grace", [("v6", 2)], (0, 0), (3, 200, 0.05, 80, 1300)),
    ("heidi", [("v4", 5)], (20_000, 20_000), (1, 40, 0.25, 40, 40)),
]
# name -> (plan, quota for this cycle in bytes or None for the plan's own)
PLANS = {
    "alice": ("home-100g", 8_000_000),    # throttled after ~15 s
    "bob": ("prepaid-10g", 6_000_000),    # blocked after ~12 s
    "carol": ("home-100g", None),
    "dave": ("business-fup", None),
    "erin": ("home-100g", None),
    "frank": ("night-free", None),
    "grace": ("unlimited", None),
    "heidi": ("prepaid-10g", None),
}
EXPECTED_STATE = {"alice": "throttled", "bob": "blocked"}
TCP_SECONDS = 25.0
API = "http://127.0.0.1:8460"


def human(n):
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000.0
    return str(n)


class Demo:
    def __init__(self, args):
        self.args = args
        self.pg = None
        self.topo = None
        self.daemon = None
        self.url = None
        self.tcp = {}      # (subscriber, address) -> LongTcp
        self.udp = None    # Proc of the running UDP client
        self.last = {}
        self.last_t = None
        self.first = None

    # -------------------------------------------------------------- set-up

    def setup(self):
        a = self.args
        if a.pg_url:
            self.url = a.pg_url
        else:
            T.log("starting a throwaway PostgreSQL (deploy/pg-throwaway.sh)")
            self.pg = T.ThrowawayPg().create()
            self.url = self.pg.url
        T.log("creating namespaces: subscribers -> gateway (NAT, conntrack) -> servers")
        self.topo = T.Topology(n_v4=6, n_v6=3).create()
        self.config = os.path.join(self.topo.workdir, "ctquotad.toml")
        with open(self.config, "w") as f:
            f.write(f"""# written by tests/netns/demo.py
[database]
url = "{self.url}"
[conntrack]
poll_interval = "1s"
event_buffer_bytes = "64MiB"
[accounting]
flush_interval = "1s"
gateway_id = "demo-gw"
[log]
level = "info"
[api]
listen = "127.0.0.1:8460"
web_dir = "{os.path.join(T.ROOT, 'web')}"
[policies]
dir = "{os.path.join(T.ROOT, 'policies')}"
[enforce]
subscriber_interface = "sub0"
""")
            if a.extra_config:
                with open(a.extra_config) as extra:
                    f.write(extra.read())
        self.cli("migrate")
        self.token = self.cli("token", "create", "--role", "billing", "--name", "demo").stdout.strip()
        self.admin = self.cli("token", "create", "--role", "admin", "--name", "demo-admin").stdout.strip()
        T.log(f"starting ctquotad in namespace {self.topo.gw}")
        self.daemon = self.topo.start_in(self.topo.gw, [a.bin, "--config", self.config],
                                         name="ctquotad", capture=False)
        T.wait_until(lambda: self._daemon_log_has("ctquotad running") or not self.daemon.alive(),
                     60, what="ctquotad to start")
        if not self.daemon.alive():
            raise RuntimeError(f"ctquotad did not start:{self.daemon.tail()}")
        T.wait_until(lambda: self.api("GET", "/readyz")[0] == 200, 30, what="the API to be ready")
        T.log(f"ctquotad running (log: {self.daemon.log_path}); adding subscribers through the API")
        self.add_subscribers()
        self.forward_web()
        T.log("generating traffic")

    def add_subscribers(self):
        self.addresses = {}
        bindings = 0
        for name, addrs, _, _ in SUBSCRIBERS:
            cidrs, mine = [], []
            for fam, i in addrs:
                if fam == "v4":
                    cidrs.append(f"{self.topo.sub_v4[i]}/32")
                    mine.append(self.topo.sub_v4[i])
                else:
                    cidrs.append(self.topo.sub_v6_prefixes[i])
                    mine.append(self.topo.sub_v6[i])
            plan, quota = PLANS[name]
            self.api_ok("POST", "/api/v1/subscribers",
                        {"id": name, "plan": plan, "addresses": cidrs}, 201)
            if quota is not None:
                self.api_ok("PUT", f"/api/v1/subscribers/{name}/quota", {"quota_bytes": quota},
                            200, 201)
            self.addresses[name] = mine
            bindings += len(cidrs)
            T.log(f"  {name}: {plan}{f', {quota} B this cycle' if quota else ''}, "
                  f"{' '.join(cidrs)}")
        # Traffic sent before the daemon knows an address would be nobody's.
        T.wait_until(lambda: self.metric("ctquota_subscriber_bindings") >= bindings, 15,
                     what="the daemon to load the bindings")

    def forward_web(self):
        """The API and web page, reachable from the host's loopback."""
        port = self.args.web_port
        p = T.Proc("nsforward", [T.PYTHON, os.path.join(T.HERE, "nsforward.py"), "--listen",
                                 f"127.0.0.1:{port}", "--netns", self.topo.gw, "--to",
                                 "127.0.0.1:8460"],
                   os.path.join(self.topo.workdir, "nsforward.log"))
        self.topo.procs.append(p)
        try:
            p.wait_line(lambda item: isinstance(item, dict) and item.get("ready"), 10,
                        what="the forwarder")
        except (RuntimeError, TimeoutError) as e:
            T.log(f"no web page on the host (port {port} busy? --web-port): {e}")
            return
        T.log(f"web admin page: http://127.0.0.1:{port}/  (admin token: {self.admin})\n"
              f"REST API, e.g.: curl -s -H 'Authorization: Bearer {self.token}' "
              f"http://127.0.0.1:{port}/api/v1/usage\n"
              f"top up bob:     curl -s -X POST -H 'Authorization: Bearer {self.admin}' "
              f"-H 'Content-Type: application/json' -d '{{\"bytes\": 1000000000}}' "
              f"http://127.0.0.1:{port}/api/v1/subscribers/bob/topups")

    def api(self, method, path, body=None, token=None):
        """A request to the daemon's API from inside the gateway namespace:
        (status, parsed JSON or None); (0, None) when it could not connect."""
        argv = ["curl", "-s", "-m", "5", "-X", method, "-w", "\n%{http_code}",
                "-H", f"Authorization: Bearer {token or self.admin}", API + path]
        if body is not None:
            argv += ["-H", "Content-Type: application/json", "--data-binary", json.dumps(body)]
        r = self.topo.run_in(self.topo.gw, argv, check=False)
        text, _, code = r.stdout.rpartition("\n")
        try:
            return int(code or 0), (json.loads(text) if text.strip() else None)
        except ValueError:
            return int(code or 0), None

    def api_ok(self, method, path, body, *codes):
        code, reply = self.api(method, path, body)
        if code not in codes:
            raise RuntimeError(f"{method} {path}: HTTP {code} {reply}")
        return reply

    def api_get(self, path):
        """GET with the billing token; parsed JSON or None."""
        code, body = self.api("GET", path, token=self.token)
        return body if code == 200 else None

    def metric(self, name):
        r = self.topo.run_in(self.topo.gw, ["curl", "-s", "-m", "5", API + "/metrics"],
                             check=False)
        for line in r.stdout.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return -1

    def cli(self, *args):
        return T.sh([self.args.bin, "--config", self.config] + list(args))

    def _daemon_log_has(self, text):
        with open(self.daemon.log_path, "rb") as f:
            return text.encode() in f.read()

    # -------------------------------------------------------------- traffic

    def keep_traffic_going(self):
        """Restarts whatever traffic finished; called from the main loop only
        (processes die with the thread that started them)."""
        for name, _, (up, down), _ in SUBSCRIBERS:
            if not up and not down:
                continue
            for addr in self.addresses[name]:
                c = self.tcp.get((name, addr))
                if c is None or not c.proc.alive():
                    if c is not None:
                        c.proc.close()
                        self.topo.procs.remove(c.proc)
                    c = T.LongTcp(self.topo, addr, up_rate=up, down_rate=down,
                                  duration=TCP_SECONDS)
                    c.proc = self.topo.start_in(self.topo.sub, c.argv, name="tcp-client")
                    self.tcp[(name, addr)] = c
        if self.udp is None or not self.udp.alive():
            if self.udp is not None:
                self.udp.close()
                self.topo.procs.remove(self.udp)
            plan = []
            for name, _, _, (flows, packets, gap, req, rep) in SUBSCRIBERS:
                for addr in self.addresses[name]:
                    plan += [{"src": addr, "packets": packets, "gap": gap, "req": req,
                              "reply": rep} for _ in range(flows)]
            path = os.path.join(self.topo.workdir, "demo-udp-plan.json")
            with open(path, "w") as f:
                json.dump(plan, f)
            self.udp = self.topo.start_in(
                self.topo.sub, [T.PYTHON, T.TRAFFIC, "udp-client", "--plan", path,
                                "--server4", self.topo.srv_v4, "--server6", self.topo.srv_v6,
                                "--port", str(self.topo.udp_port), "--window", "64"],
                name="udp-client")

    def stop_traffic(self):
        for c in self.tcp.values():
            c.proc.stop(signal.SIGTERM, timeout=5)
        if self.udp is not None:
            self.udp.stop(signal.SIGTERM, timeout=5)

    # -------------------------------------------------------------- table

    def usage(self):
        out = T.psql(self.url, "SELECT s.external_id, coalesce(u.up_bytes, 0), "
                               "coalesce(u.down_bytes, 0), coalesce(u.up_packets, 0), "
                               "coalesce(u.down_packets, 0), "
                               "coalesce(to_char(u.updated_at, 'HH24:MI:SS'), '-'), "
                               "coalesce(s.plan, '-'), coalesce(st.state, 'normal') "
                               "FROM subscribers s "
                               "LEFT JOIN usage_current u ON u.subscriber_id = s.external_id "
                               "LEFT JOIN subscriber_state st ON st.subscriber_id = s.id "
                               "ORDER BY s.external_id")
        rows = {}
        for line in out.splitlines():
            if line.strip():
                sid, ub, db, up, dp, upd, plan, state = line.split("|")
                rows[sid] = (int(ub), int(db), int(up), int(dp), upd, plan, state)
        return rows

    def print_table(self, title, rates=True):
        now = time.monotonic()
        rows = self.usage()
        dt = (now - self.last_t) if self.last_t and rates else None
        print(f"\n{title}  ({time.strftime('%H:%M:%S')}, usage_current + subscriber_state)")
        print(f"{'subscriber':<10} {'plan':<13} {'state':<9} {'up':>10} {'down':>10} "
              f"{'up pkts':>8} {'down pkts':>9} {'up rate':>11} {'down rate':>11}  updated")
        for name, *_ in SUBSCRIBERS:
            ub, db, up, dp, upd, plan, state = rows.get(name, (0, 0, 0, 0, "-", "-", "-"))
            if dt and name in self.last:
                ur = human((ub - self.last[name][0]) / dt) + "/s"
                dr = human((db - self.last[name][1]) / dt) + "/s"
            else:
                ur = dr = ""
            print(f"{name:<10} {plan:<13} {state:<9} {human(ub):>10} {human(db):>10} {up:>8} "
                  f"{dp:>9} {ur:>11} {dr:>11}  {upd}")
        sys.stdout.flush()
        self.last = rows
        self.last_t = now
        if self.first is None:
            self.first = rows
        return rows

    # -------------------------------------------------------------- run

    def run(self):
        a = self.args
        end = time.monotonic() + a.duration if a.duration else None
        next_table = time.monotonic() + a.interval
        print("\nCtrl-C stops the demo and removes everything it created.", flush=True)
        while end is None or time.monotonic() < end:
            self.keep_traffic_going()
            if not self.daemon.alive():
                raise RuntimeError(f"ctquotad exited:{self.daemon.tail()}")
            if time.monotonic() >= next_table:
                self.print_table("per-subscriber usage")
                next_table += a.interval
            time.sleep(0.25)  # main-loop tick

    def finish(self):
        """Stops traffic, then ctquotad (it flushes), prints the final totals.
        Returns ctquotad's exit status."""
        self.stop_traffic()
        rc = None
        if self.daemon is not None:
            rc = self.daemon.stop(signal.SIGTERM, timeout=30)
            T.log(f"ctquotad stopped (exit status {rc})")
            self.print_table("final totals", rates=False)
        return rc

    def teardown(self):
        if self.topo is not None:
            self.topo.destroy()
        if self.pg is not None:
            self.pg.destroy()
        T.log("demo removed: processes, namespaces, database")


def _interrupt(_sig, _frame):
    raise KeyboardInterrupt


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(T.ROOT, "build-demo", "daemon", "ctquotad"))
    ap.add_argument("--duration", type=float, default=0,
                    help="stop after this many seconds (default: run until Ctrl-C)")
    ap.add_argument("--interval", type=float, default=3.0, help="seconds between tables")
    ap.add_argument("--pg-url", help="use this PostgreSQL database instead of a throwaway one")
    ap.add_argument("--web-port", type=int, default=8460,
                    help="host loopback port for the API and web page (default 8460)")
    ap.add_argument("--extra-config", help="a file of config sections appended to ctquotad's "
                    "(e.g. [flowlog], [ipfix]; tests/bench/flowlog_volume.py)")
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("the demo needs root (network namespaces, nftables, conntrack)", file=sys.stderr)
        return 2
    if not os.access(a.bin, os.X_OK):
        print(f"ctquotad not found at {a.bin} (deploy/demo.sh builds it)", file=sys.stderr)
        return 2
    # Ctrl-C, SIGTERM and SIGHUP all mean "stop the demo in order" (even when
    # started in the background, where SIGINT is otherwise ignored).
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    demo = Demo(a)
    status = 1
    interrupted = False
    try:
        demo.setup()
        try:
            demo.run()
        except KeyboardInterrupt:
            interrupted = True
            print("\nstopping (Ctrl-C or signal)", flush=True)
        api = demo.api_get("/api/v1/usage?limit=100")  # the daemon still runs here
        api_ok = api is not None and len(api.get("items", [])) == len(SUBSCRIBERS)
        if not api_ok:
            T.log(f"the REST API did not list every subscriber's usage: {api}")
        rc = demo.finish()
        final = demo.last
        grew = all(final.get(n, (0, 0))[0] > 0 and final.get(n, (0, 0))[1] > 0
                   for n, *_ in SUBSCRIBERS)
        if not grew:
            T.log("some subscriber has no usage: "
                  + ", ".join(n for n, *_ in SUBSCRIBERS if not final.get(n, (0, 0))[0]))
        states = {n: final.get(n, (0,) * 7)[6] for n in EXPECTED_STATE}
        enforced = a.duration < 40 or states == EXPECTED_STATE
        if not enforced:
            T.log(f"expected {EXPECTED_STATE}, got {states}")
        status = 0 if rc == 0 and ((grew and api_ok and enforced) or interrupted) else 1
    except KeyboardInterrupt:
        print("\ninterrupted during set-up or shutdown: removing everything", flush=True)
        status = 130
    except Exception as e:
        T.log(f"demo failed: {e}")
        status = 1
    finally:
        demo.teardown()
    return status


if __name__ == "__main__":
    sys.exit(main())
