#!/usr/bin/env python3
"""The fault campaign (CTest label `faults`): one daemon, one lab, mixed
traffic with ground truth, and one fault after another. After each: every
subscriber's bytes and packets, up and down, equal what the gateway
forwarded (nftables counters in its forward hook), nothing doubled (the
hourly and the period rows agree), nothing lost, and nothing arrives late.

Traffic: short UDP flows from every subscriber, ending all the time
(trafficgen.py udp-client, one plan after another), one long TCP stream per
family across the phase (trafficgen.py tcp-client), IPv4 and IPv6. The
daemon runs with its event journal under an emulated service manager's fd
store (fdstore.py), and talks to its own PostgreSQL cluster through a proxy
that can cut a COMMIT's answer (cutting_proxy.py).

Faults, in this order (the first needs the fresh, small event buffer):
  flood       30k one-packet flows at once on top: the event socket overruns
  sigterm     SIGTERM under load, restart (with a 256-sample queue from then on)
  full_queue  the flood again: the event reader waits for room, drops nothing
  kill9 x5    kill -9 at a random moment, restart at once
  in_doubt    a flush's COMMIT answer cut, the database unreachable for 3 s
  pg_stopped  PostgreSQL stopped for 60 s (a kill -9 in the middle, so the
              restart waits for it); /readyz says so while it lasts

    CTQUOTA_BIN=... CTQUOTA_FLOWGEN=... faults_e2e.py [--only PHASE,...] [--seed N] [--short]

--short (the sanitized build's run in CI): every fault once more, shorter: two
kills and a 20 s outage; the release build runs the full campaign.
Needs root; its own PostgreSQL cluster (no CTQUOTA_TEST_DB_URL needed).
"""

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from ctviews import make_udp_plan  # noqa: E402
from daemon_harness import Daemon  # noqa: E402
from lab import SRV_V4, SRV_V6, Lab, wait_for  # noqa: E402
from nsproc import PYTHON, TRAFFIC, log  # noqa: E402
from pgutil import ThrowawayPg, with_dbname  # noqa: E402

N_V4, N_V6 = 6, 3
FLOOD_SOURCES = 2  # the last v4 subscribers: flood only (flowgen binds a fixed port)
UDP_PORT, TCP_PORT = 9000, 9100
API = "http://127.0.0.1:8460"
FLOOD_FLOWS = 30_000
OUTAGE = 60.0
SHORT = {"kills": 2, "outage": 20.0}
KEYS = ("up_bytes", "down_bytes", "up_packets", "down_packets")


class Fail(AssertionError):
    pass


def check(cond, what):
    if not cond:
        raise Fail(what)


class Campaign:
    def __init__(self, lab, pg, seed, short=False):
        self.lab, self.pg = lab, pg
        self.kills = SHORT["kills"] if short else 5
        self.outage = SHORT["outage"] if short else OUTAGE
        self.rnd = random.Random(seed)
        self.subs = {f"v4-{i}": a for i, a in enumerate(lab.sub_v4)}
        self.subs.update({f"v6-{i}": a for i, a in enumerate(lab.sub_v6)})
        self.flood_sources = lab.sub_v4[-FLOOD_SOURCES:]
        self.churn_sources = [a for a in lab.subscriber_addresses() if a not in self.flood_sources]
        self.replayed = 0

    # ---------------------------------------------------------------- set-up

    def set_up(self):
        lab = self.lab
        rules = []
        for name, addr in self.subs.items():
            fam = "ip6" if ":" in addr else "ip"
            for direction, field in (("up", "saddr"), ("down", "daddr")):
                # Conntrack counts what it tracks: not invalid packets, not
                # ICMP errors (related) — so the truth does not either.
                rules.append(f'    ct state {{ new, established }} {fam} {field} {addr} counter '
                             f'comment "{name} {direction}"\n')
        lab.run(lab.gw, ["nft", "-f", "-"], input=(
            "table inet ctq_truth {\n  chain count_forward {\n    type filter hook forward priority -10;\n"
            + "".join(rules) + "  }\n}\n"))
        # The servers take the flood silently (no ICMP errors flow back).
        lab.run(lab.srv, ["nft", "-f", "-"], input=(
            "table inet sink {\n  chain input {\n    type filter hook input priority 0;\n"
            f"    udp dport != {UDP_PORT} drop\n  }}\n}}\n"))
        for mode, port in (("udp-server", UDP_PORT), ("tcp-server", TCP_PORT)):
            p = lab.start_in(lab.srv, [PYTHON, TRAFFIC, mode, "--port", str(port)], name=mode)
            p.wait_line(lambda x: isinstance(x, dict) and x.get("ready"), 15, "ready")
        self.proxy_dir = os.path.join(lab.workdir, "proxy")
        os.makedirs(self.proxy_dir)
        pg_socket = os.path.join(self.pg.dir, f".s.PGSQL.{self.pg.port}")
        self.proxy = lab.start_in(lab.gw, [PYTHON, os.path.join(HERE, "cutting_proxy.py"),
                                           os.path.join(self.proxy_dir, ".s.PGSQL.5432"),
                                           pg_socket], name="proxy")
        self.proxy.wait_line(lambda x: x == "ready", 10, "ready")
        self.daemon = Daemon(lab, poll="2s", flush="1s", db_url=self.pg.url)
        for name, addr in self.subs.items():
            self.daemon.add_subscriber(name, addr + ("/64" if ":" in addr else "/32"))
        self.proxied_url = with_dbname(
            f"postgresql:///x?host={self.proxy_dir}&port=5432&user=postgres", self.daemon.dbname)
        self.configure(queue="")
        self.daemon.start()

    def configure(self, queue):
        self.daemon.write_config(
            conntrack_extra='event_buffer_bytes = "256KiB"\nmax_event_buffer_bytes = "64MiB"\n'
            + queue, database_url=self.proxied_url, accounting_extra='retry_max = "2s"\n',
            # Small, so that the outage spills and cuts the journal many times.
            journal_extra='segment_bytes = "64KiB"\nspill_after_bytes = "64KiB"\n')

    def close(self):
        if getattr(self, "daemon", None):
            self.daemon.close()

    # ---------------------------------------------------------------- traffic

    def churn(self, stop):
        """Short UDP flows from every churn source until `stop` is set."""
        n = 0
        while not stop.is_set():
            n += 1
            plan = make_udp_plan(self.churn_sources, seed=self.rnd.randrange(1 << 30), flows=(3, 6),
                                 many_every=0)
            path = os.path.join(self.lab.workdir, f"plan-{n}.json")
            with open(path, "w") as f:
                json.dump(plan, f)
            p = self.lab.start_in(self.lab.sub, [PYTHON, TRAFFIC, "udp-client", "--plan", path,
                                                 "--server4", SRV_V4, "--server6", SRV_V6,
                                                 "--port", str(UDP_PORT), "--window", "16",
                                                 "--timeout", "0.5"], name=f"churn-{n}")
            p.wait(120)

    def with_traffic(self, seconds, fault, at=None):
        """Traffic for `seconds`; fault() at `at` s, by default a random moment
        in the middle."""
        stop = threading.Event()
        churn = threading.Thread(target=self.churn, args=(stop,))
        churn.start()
        streams = [self.lab.start_in(self.lab.sub, [
            PYTHON, TRAFFIC, "tcp-client", "--src", src, "--dst", SRV_V6 if ":" in src else SRV_V4,
            "--port", str(TCP_PORT), "--up-rate", "150000", "--down-rate", "400000",
            "--duration", str(seconds)], name="stream")
            for src in (self.churn_sources[0], self.lab.sub_v6[0])]
        time.sleep(self.rnd.uniform(0.25, 0.75) * seconds if at is None else at)  # the fault's moment
        try:
            fault()
        finally:
            for s in streams:
                check(s.wait(seconds + 60) == 0, f"a TCP stream failed: {s.tail()}")
            stop.set()
            churn.join()

    # ---------------------------------------------------------------- checks

    def truth(self):
        listing = json.loads(self.lab.run(self.lab.gw, ["nft", "-j", "list", "table", "inet",
                                                        "ctq_truth"]).stdout)
        out = {name: dict.fromkeys(KEYS, 0) for name in self.subs}
        for item in listing["nftables"]:
            rule = item.get("rule")
            if not rule:
                continue
            name, direction = rule["comment"].split()
            counter = next(e["counter"] for e in rule["expr"] if "counter" in e)
            out[name][f"{direction}_bytes"] = counter["bytes"]
            out[name][f"{direction}_packets"] = counter["packets"]
        return {k: v for k, v in out.items() if any(v.values())}

    def billed(self, table):
        rows = self.daemon.query(
            "SELECT s.external_id, sum(u.up_bytes), sum(u.down_bytes), sum(u.up_packets), "
            f"sum(u.down_packets) FROM {table} u JOIN subscribers s ON s.id = u.subscriber_id "
            "GROUP BY 1")
        return {r[0]: dict(zip(KEYS, map(int, r[1:]))) for r in rows}

    def subscriber_entries(self):
        out = self.lab.run(self.lab.gw, ["conntrack", "-L"], check=False).stdout
        return sum(1 for line in out.splitlines() if "src=100.64." in line or "src=2001:db8:0:" in line)

    def settle_and_check(self, phase):
        wait_for(lambda: self.subscriber_entries() == 0, timeout=120, interval=0.5,
                 what="every subscriber flow to end")
        truth = self.truth()
        last = {}

        def exact():
            nonlocal last
            last = self.billed("usage_hourly")
            return last == truth

        try:
            wait_for(exact, timeout=60, interval=0.5, what="billed to equal forwarded")
        except TimeoutError:
            diff = {k: (truth.get(k), last.get(k)) for k in set(truth) | set(last)
                    if truth.get(k) != last.get(k)}
            raise Fail(f"{phase}: billed != forwarded (forwarded, billed): {diff}")
        # Nothing arrives late: a replayed duplicate or a double flush would show here.
        time.sleep(2.5)  # observation window: two flush intervals, not synchronisation
        check(self.billed("usage_hourly") == truth, f"{phase}: totals changed after matching")
        check(self.billed("usage_period") == truth, f"{phase}: period rows differ from hourly rows")
        total = sum(v["up_packets"] + v["down_packets"] for v in truth.values())
        log(f"{phase}: exact ({len(truth)} subscribers, {total} packets so far)")

    # ---------------------------------------------------------------- daemon

    def http(self, path):
        r = self.lab.run(self.lab.gw, ["curl", "-s", "--max-time", "2", "-w", "\n%{http_code}",
                                       API + path], check=False)
        body, _, code = r.stdout.rpartition("\n")
        return int(code or 0), body

    def metric(self, name):
        code, body = self.http("/metrics")
        check(code == 200, f"/metrics answered {code}")
        m = re.search(rf"^ctquota_{name} (\d+)$", body, re.M)
        return int(m.group(1)) if m else None

    def restart(self, sig, wait=True):
        log_before = len(self.daemon.read_log())
        rc = self.daemon.stop(sig)
        if sig == "KILL":
            check(rc == -9, f"kill -9 gave {rc}")
        else:
            check(rc == 0, f"SIGTERM: exit status {rc}")
            check("flushing and stopping" in self.daemon.read_log()[log_before:], "no clean stop")
        check(self.daemon.fd_store.names() == ["conntrack-events"],
              f"the event socket is not in the fd store: {self.daemon.fd_store.names()}")
        self.daemon.start(wait=wait)

    def count_replayed(self):
        found = re.findall(r"journal .*: (\d+) events replayed", self.daemon.read_log())
        return sum(map(int, found))

    def flood(self):
        out = self.lab.run(self.lab.sub, [os.environ.get("CTQUOTA_FLOWGEN", "flowgen"), SRV_V4,
                                          str(FLOOD_FLOWS), "0", "1", "64"] + self.flood_sources)
        check(json.loads(out.stdout)["flows"] == FLOOD_FLOWS, "flowgen sent less")

    # ---------------------------------------------------------------- phases

    def phase_flood(self):
        self.with_traffic(6, self.flood)
        self.settle_and_check("flood")
        overruns = self.metric("enobufs_total")
        check(overruns and overruns > 0, "the flood did not overrun the event buffer: proves nothing")
        log(f"flood: {overruns} overruns of the event socket")

    def phase_sigterm(self):
        def fault():
            self.configure(queue="queue_samples = 256\n")
            self.restart("TERM")
        self.with_traffic(6, fault)
        self.settle_and_check("sigterm")

    def phase_full_queue(self):
        self.with_traffic(6, self.flood)
        self.settle_and_check("full_queue")
        waits, overflows = self.metric("queue_full_waits_total"), self.metric("queue_overflows_total")
        check(waits and waits > 0, "the queue never filled: proves nothing")
        check(overflows == 0, f"{overflows} batches dropped from a full queue")
        log(f"full_queue: the reader waited {waits} times")

    def phase_kill9(self):
        times = self.kills
        for i in range(times):
            before = self.count_replayed()
            # The last kill lands while the reader takes a burst of DESTROYs:
            # read, journaled, most of them not flushed yet.
            fault = self.kill_during_burst if i == times - 1 else lambda: self.restart("KILL")
            self.with_traffic(self.rnd.uniform(3, 6), fault)
            self.settle_and_check(f"kill9 #{i + 1}")
            self.replayed += self.count_replayed() - before
        # Some DESTROYs read but not flushed must have been replayed, or the
        # journal was never put to the test.
        check(self.replayed > 0, "no kill landed with events read but not flushed")
        log(f"kill9: {self.replayed} journaled events replayed over {times} restarts")

    def kill_during_burst(self):
        read = self.metric("events_read_total")
        self.lab.run(self.lab.sub, [os.environ.get("CTQUOTA_FLOWGEN", "flowgen"), SRV_V4, "3000",
                                    "0", "1", "64"] + self.flood_sources)
        wait_for(lambda: self.metric("events_read_total") >= read + 1000, timeout=30,
                 interval=0.02, what="the burst's DESTROYs to be read")
        self.restart("KILL")

    def phase_in_doubt(self):
        before = len(self.daemon.read_log())

        def fault():
            self.proxy.send_signal(signal.SIGUSR1)
            self.proxy.wait_line(lambda x: x == "cut", 20, "a COMMIT to cut")
        self.with_traffic(6, fault)
        self.settle_and_check("in_doubt")
        log_text = self.daemon.read_log()[before:]
        check("the flush in doubt had committed" in log_text
              or "but the flush had committed" in log_text,
              f"the cut COMMIT was not resolved as committed:\n{log_text[-3000:]}")

    def phase_pg_stopped(self):
        probes = []  # (seconds into the outage, the daemon restarted since, status)
        spilled = {}
        log_before = len(self.daemon.read_log())

        def outage():
            self.pg_ctl("stop")
            t0 = time.monotonic()
            restarted = False
            while time.monotonic() - t0 < self.outage:
                code, _ = self.http("/readyz")
                probes.append((round(time.monotonic() - t0, 1), restarted, code))
                if not restarted and time.monotonic() - t0 > self.outage / 2:
                    spilled["count"] = self.metric("journal_spills_total")
                    spilled["disk"] = self.metric("journal_disk_bytes")
                    self.restart("KILL", wait=False)  # start-up now waits for the database
                    restarted = True
                time.sleep(1)  # pacing of the /readyz probes
            self.pg_ctl("start")
            self.daemon.wait_running(timeout=60)
        self.with_traffic(self.outage + 8, outage, at=self.rnd.uniform(1, 4))
        self.settle_and_check("pg_stopped")
        code, _ = self.http("/readyz")
        check(code == 200, f"/readyz answered {code} after the outage")
        # Not ready from at most 5 s into the outage (the flusher notices at
        # its next flush) until its end; the restarted daemon not ready until
        # it has the database. Probes nobody answered (the daemon being
        # restarted, its API not up yet) say nothing.
        answered = [(t, r, c) for t, r, c in probes if t >= 5 and c != 0]
        check(answered and all(c == 503 for _, _, c in answered),
              f"/readyz during the outage: {probes}")
        check(any(r for _, r, _ in answered), f"/readyz never answered after the restart: {probes}")
        # The journal did not grow with the outage: spilled, cut, and the
        # restart went on from the spill.
        check(spilled["count"] > 0, "nothing was spilled during the outage")
        check(spilled["disk"] <= 1 << 20, f"the journal held {spilled['disk']} bytes in the outage")
        check("restored what the last run spilled" in self.daemon.read_log()[log_before:],
              "the restart did not go on from the spill")
        log(f"pg_stopped: /readyz 503 throughout ({len(answered)} probes answered); "
            f"{spilled['count']} spills, journal at {spilled['disk']} bytes")

    def pg_ctl(self, action):
        pgbin = sorted(d for d in os.listdir("/usr/lib/postgresql"))[-1]
        ctl = f"/usr/lib/postgresql/{pgbin}/bin/pg_ctl"
        data = os.path.join(self.pg.dir, "data")
        argv = ["runuser", "-u", "postgres", "--", ctl, "-D", data, "-w", "-t", "60"]
        if action == "stop":
            subprocess.run(argv + ["-m", "fast", "stop"], check=True, capture_output=True)
        else:
            ns = self.pg.namespaces[0]
            subprocess.run(["ip", "netns", "exec", ns] + argv +
                           ["-l", os.path.join(self.pg.dir, "server.log"), "start"],
                           check=True, capture_output=True)


PHASES = ["flood", "sigterm", "full_queue", "kill9", "in_doubt", "pg_stopped"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", help="comma-separated phases, in campaign order")
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--short", action="store_true", help="two kills, a 20 s outage")
    args = ap.parse_args()
    phases = args.only.split(",") if args.only else PHASES
    log(f"fault campaign, seed {args.seed}: {', '.join(phases)}")
    started = time.monotonic()
    with ThrowawayPg(port=54339) as pg, Lab(n_v4=N_V4, n_v6=N_V6) as lab:
        campaign = Campaign(lab, pg, args.seed, short=args.short)
        try:
            campaign.set_up()
            for name in phases:
                getattr(campaign, f"phase_{name}")()
        except BaseException:
            print("---- ctquotad log (tail) ----\n" + campaign.daemon.read_log()[-8000:]
                  if getattr(campaign, "daemon", None) else "", file=sys.stderr)
            raise
        finally:
            campaign.close()
    log(f"fault campaign passed in {time.monotonic() - started:.0f} s (seed {args.seed})")


if __name__ == "__main__":
    main()
