"""End to end: real packets through a gateway namespace, real conntrack
events, ctquotad, real PostgreSQL. Totals must equal ground truth exactly."""

import json
import os
import re
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from daemon_harness import Daemon  # noqa: E402
from lab import SRV_V4, SRV_V6, Lab, wait_for  # noqa: E402
from nsproc import CTNL, PYTHON  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
TRAFFIC = os.path.join(HERE, "e2e_traffic.py")
UDP_PORT = 7000
TCP_PORT = 7001
POLL = 1.0
FLUSH = 0.25


def udp_plan(addresses):
    """Flows of assorted sizes: 1-3 flows per address, 1-6 packets each."""
    plan = []
    for i, src in enumerate(addresses):
        dst = SRV_V6 if ":" in src else SRV_V4
        for f in range(1 + i % 3):
            plan.append({"src": src, "dst": dst, "port": UDP_PORT, "packets": 1 + (i + f) % 6,
                         "request": 20 + (37 * i + 11 * f) % 1200, "reply": (53 * i + 7 * f) % 1300})
    return plan


def start_server(lab, mode, port):
    """Starts a traffic server in the server namespace; returns once it listens."""
    p = lab.start(lab.srv, ["python3", TRAFFIC, mode, str(port)])
    line = p.stdout.readline()  # the server prints "ready" once bound
    if line.strip() != "ready":
        raise RuntimeError(f"{mode} did not start: {line}{p.stderr.read() if p.poll() is not None else ''}")
    return p


def kernel_counters(lab, src, sport):
    """(orig bytes, orig packets, reply bytes, reply packets, state) of one TCP entry."""
    out = lab.run(lab.gw, ["conntrack", "-L", "-p", "tcp", "--orig-src", src, "--sport", str(sport),
                           "-o", "extended"], check=False).stdout
    line = next((l for l in out.splitlines() if f"sport={sport} " in l), None)
    if line is None:
        return None
    pk = [int(x) for x in re.findall(r"packets=(\d+)", line)]
    by = [int(x) for x in re.findall(r"bytes=(\d+)", line)]
    state = line.split()[5]
    return by[0], pk[0], by[1], pk[1], state


class AccountingEndToEnd(unittest.TestCase):
    def setUp(self):
        self.lab = Lab(n_v4=52, n_v6=5).__enter__()
        self.addCleanup(self.lab.close)
        self.daemon = Daemon(self.lab, poll=f"{int(POLL * 1000)}ms", flush=f"{int(FLUSH * 1000)}ms")
        self.addCleanup(self.daemon.close)
        self.addCleanup(self.dump_log_on_failure)

    def dump_log_on_failure(self):
        outcome = getattr(self, "_outcome", None)
        errors = getattr(getattr(outcome, "result", None), "failures", []) + \
            getattr(getattr(outcome, "result", None), "errors", [])
        if any(test is self for test, _ in errors):
            print("---- ctquotad log ----\n" + self.daemon.read_log()[-6000:], file=sys.stderr)

    def replace_daemon(self, **daemon_args):
        """Replaces setUp's daemon by one made with `daemon_args`."""
        self.daemon.close()
        self.daemon = Daemon(self.lab, poll=f"{int(POLL * 1000)}ms", flush=f"{int(FLUSH * 1000)}ms",
                             **daemon_args)
        self.addCleanup(self.daemon.close)  # the replacement needs its own cleanup
        self.addCleanup(self.dump_log_on_failure)  # cleanups run last first: before that close

    def wait_totals(self, expected, timeout=60):
        """Polls the database until it shows `expected`; returns the last totals seen."""
        last = {}

        def matches():
            nonlocal last
            last = self.daemon.totals()
            return all(last.get(k) == v for k, v in expected.items())

        try:
            wait_for(matches, timeout=timeout, interval=0.25, what="totals to match ground truth")
        except TimeoutError:
            pass
        return last

    def send_udp(self, addresses):
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(udp_plan(addresses), f)
        out = self.lab.run(self.lab.sub, ["python3", TRAFFIC, "udp-client", f.name]).stdout
        os.unlink(f.name)
        result = json.loads(out)
        self.assertEqual(result["lost_replies"], [], "the lab itself lost packets")
        return result["truth"]

    def test_database_outage_loses_nothing(self):
        addresses = self.lab.sub_v4[:10]
        for i, addr in enumerate(addresses):
            self.daemon.add_subscriber(f"sub-{i}", addr + "/32")
        self.daemon.start()
        start_server(self.lab, "udp-server", UDP_PORT)
        before = self.send_udp(addresses)
        self.daemon.set_database_reachable(False)
        during = self.send_udp(addresses)  # flows that start and end during the outage
        wait_for(lambda: self.lab.conntrack_count() == 0, timeout=90, interval=0.5,
                 what="all conntrack entries to be destroyed")
        wait_for(lambda: "flush failed" in self.daemon.read_log(), timeout=30,
                 what="the daemon to notice the outage")
        self.daemon.set_database_reachable(True)
        expected = {f"sub-{i}": {k: before[a][k] + during[a][k] for k in before[a]}
                    for i, a in enumerate(addresses)}
        got = self.wait_totals(expected)
        self.assertEqual(got, expected)
        self.assertIn("database writes succeed again", self.daemon.read_log())

    def start_without_database(self, prefix, sources, **daemon_args):
        """Replaces the test's daemon by one made with `daemon_args`, binds
        sources[i] to subscriber "<prefix>-<i>" and starts it while its
        database refuses connections (restart_without_database). The gateway
        keeps the kernel's default conntrack event mode (2: events once
        somebody listens) and ends UDP entries 1 s after their last packet."""
        self.lab.run(self.lab.gw, ["sysctl", "-qw", "net.netfilter.nf_conntrack_events=2",
                                   "net.netfilter.nf_conntrack_udp_timeout=1"])
        self.replace_daemon(**daemon_args)
        for i, a in enumerate(sources):
            self.daemon.add_subscriber(f"{prefix}-{i}", a + "/32")
        self.restart_without_database()

    def restart_without_database(self):
        """Starts the daemon while its database refuses connections; returns
        once start-up waits for it."""
        self.daemon.set_database_reachable(False)
        self.daemon.start(wait=False)
        wait_for(lambda: ("database not ready" in self.this_run_log()
                          or self.daemon.proc.poll() is not None),
                 timeout=20, what="start-up to wait for the database")
        self.assertIsNone(self.daemon.proc.poll(), "ctquotad exited at start")

    def this_run_log(self):
        return self.daemon.read_log()[self.daemon.run_offset:]

    def reliable_delivery(self):
        """(NETLINK_BROADCAST_ERROR, NETLINK_NO_ENOBUFS) of the gateway's one
        DESTROY event socket, as the kernel reports them (sock_diag)."""
        out = self.lab.run(self.lab.gw, [PYTHON, CTNL, "listeners"]).stdout
        found = [json.loads(line) for line in out.splitlines()]
        destroy = [f for f in found if 3 in f.get("groups", [])]  # NFNLGRP_CONNTRACK_DESTROY
        self.assertEqual(len(destroy), 1, f"event sockets in the gateway: {found}")
        return destroy[0]["broadcast_error"], destroy[0]["no_enobufs"]

    def end_flows(self):
        """Waits until every flow's entry is destroyed and let go: a dump ends
        the expired ones, and `conntrack -C` still counts the dying entries
        the kernel keeps for a reliable listener that has not taken their
        DESTROY (`conntrack -L dying` lists them)."""
        try:
            wait_for(lambda: self.lab.conntrack_dumped() == 0 and self.lab.conntrack_count() == 0,
                     timeout=15, interval=0.25, what="every flow's entry to be destroyed and let go")
        except TimeoutError:
            dying = self.lab.run(self.lab.gw, ["conntrack", "-L", "dying"], check=False).stdout
            self.fail(f"the kernel holds {len(dying.splitlines())} dying entries "
                      f"({self.lab.conntrack_count()} counted): nobody reads their DESTROY")

    def test_start_up_journals_events_while_the_database_is_unreachable(self):
        # Issue 9: start-up waits for the database; meanwhile the event reader
        # journals, and asks for reliable delivery because it reads. Its
        # socket (32 KiB) holds about 50 DESTROYs of the 3,000 flows ended
        # during the wait: unread, the kernel would keep the other entries
        # dying (reliable delivery) or lose their events (without).
        sources = self.lab.sub_v4[:10]
        self.count_forwarded(sources)
        self.start_without_database("startup", sources,
                                    conntrack_extra='event_buffer_bytes = "32KiB"\n')
        self.assertEqual(self.reliable_delivery(), (True, True))
        self.send_flows(3000, sources)
        self.end_flows()
        self.assertGreaterEqual(self.daemon.metrics()["ctquota_journal_records_total"], 3000)
        self.assertNotIn("ctquotad running", self.this_run_log(), "the database answered too soon")
        self.daemon.set_database_reachable(True)
        self.daemon.wait_running()
        expected = self.forwarded(sources, "startup", 2 * 3000)
        self.assertEqual(self.wait_totals(expected), expected)
        self.assertEqual(self.daemon.metrics()["ctquota_flows_lost_total"], 0)

    def test_without_a_journal_reliable_delivery_waits_for_reading(self):
        # Without a journal nothing reads the event socket before the
        # database answers: neither a new socket nor the one a restart takes
        # back from the fd store (which the previous run left asking) may ask
        # for reliable delivery meanwhile, or the kernel would keep, for
        # nobody, the dying entries that do not fit. The events wait in the
        # socket (64 MiB) and are counted once the database answers.
        sources = self.lab.sub_v4[:10]
        self.count_forwarded(sources)
        self.start_without_database("nojournal", sources, journal=False)
        for run in (1, 2):
            if run == 2:
                self.assertEqual(self.daemon.stop(), 0)
                self.restart_without_database()
                self.assertIn("the socket of the previous run, handed back", self.this_run_log())
            self.assertEqual(self.reliable_delivery(), (False, False), f"run {run} waiting")
            self.send_flows(500, sources)
            self.end_flows()
            self.assertEqual(self.daemon.metrics()["ctquota_events_read_total"], 0)
            self.daemon.set_database_reachable(True)
            self.daemon.wait_running()
            self.assertEqual(self.reliable_delivery(), (True, True), f"run {run} reading")
            expected = self.forwarded(sources, "nojournal", 2 * 500 * run)
            self.assertEqual(self.wait_totals(expected), expected, f"run {run}")

    def test_udp_flows_match_ground_truth_exactly(self):
        bound = self.lab.sub_v4[:50] + self.lab.sub_v6      # one subscriber per address
        unbound = self.lab.sub_v4[50:]                       # traffic of nobody
        for i, addr in enumerate(bound):
            self.daemon.add_subscriber(f"sub-{i:02d}", addr + ("/128" if ":" in addr else "/32"))
        self.daemon.start()
        start_server(self.lab, "udp-server", UDP_PORT)
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(udp_plan(bound + unbound), f)
        out = self.lab.run(self.lab.sub, ["python3", TRAFFIC, "udp-client", f.name]).stdout
        os.unlink(f.name)
        result = json.loads(out)
        self.assertEqual(result["lost_replies"], [], "the lab itself lost packets")
        truth = result["truth"]
        expected = {f"sub-{i:02d}": truth[a] for i, a in enumerate(bound)}

        # Every flow must end (DESTROY) before totals can be final.
        wait_for(lambda: self.lab.conntrack_count() == 0, timeout=90, interval=0.5,
                 what="all conntrack entries to be destroyed")
        got = self.wait_totals(expected)
        for sub, want in expected.items():
            self.assertEqual(got.get(sub), want, f"{sub}")
        # Nothing arrives late: a stale dump or a resent event would show up here.
        time.sleep(POLL * 2 + FLUSH * 2)  # observation window, not synchronisation
        self.assertEqual(self.daemon.totals(), got)
        other = {"up_bytes": 0, "down_bytes": 0, "up_packets": 0, "down_packets": 0}
        for a in unbound:
            for k in other:
                other[k] += truth[a][k]
        self.assertEqual(self.daemon.unattributed(), other)
        self.assertIn("matched no subscriber", self.daemon.read_log())
        self.assertEqual(self.daemon.usage("sub-00")["up_bytes"], truth[bound[0]]["up_bytes"])

    def run_long_tcp(self, kill_at=None, seconds=8.0, rate=200_000, src=None):
        src = src or self.lab.sub_v4[0]
        self.daemon.add_subscriber("tcp-sub", src + ("/64" if ":" in src else "/32"))
        self.daemon.start()
        start_server(self.lab, "tcp-server", TCP_PORT)
        client = self.lab.start(self.lab.sub, ["python3", TRAFFIC, "tcp-client", src,
                                               SRV_V6 if ":" in src else SRV_V4,
                                               str(TCP_PORT), str(rate), str(seconds)])
        progress = []
        killed = False
        for line in client.stdout:
            report = json.loads(line)
            progress.append(report)
            if report.get("done"):
                break
            elapsed = len(progress)
            if elapsed >= 2 and not report.get("done"):
                # Bytes sent one poll + flush (+ slack) ago must already be stored.
                old = progress[-2]["sent"] if elapsed >= 3 else 0
                horizon = POLL + FLUSH + 1.0
                ok = wait_for(lambda: self.daemon.totals().get("tcp-sub", {}).get("up_bytes", 0) >= old,
                              timeout=horizon, interval=0.1, what="usage of a live connection")
                self.assertTrue(ok)
            if kill_at is not None and not killed and elapsed >= kill_at:
                self.assertEqual(self.daemon.stop("KILL"), -9)
                killed = True
                self.daemon.start()
        self.assertEqual(client.wait(timeout=30), 0)
        sport = progress[-1]["sport"]
        counters = wait_for(lambda: (c := kernel_counters(self.lab, src, sport)) and
                            c[4] in ("TIME_WAIT", "CLOSE") and c,
                            timeout=10, interval=0.05, what="connection to close")
        expected = {"up_bytes": counters[0], "up_packets": counters[1],
                    "down_bytes": counters[2], "down_packets": counters[3]}
        self.assertGreater(expected["up_bytes"], rate * seconds * 0.9)
        wait_for(lambda: self.lab.conntrack_count() == 0, timeout=60, interval=0.5,
                 what="the connection's DESTROY")
        got = self.wait_totals({"tcp-sub": expected})
        self.assertEqual(got.get("tcp-sub"), expected)
        return killed

    def run_burst(self, flows, conntrack_extra, rate=0, alongside=None):
        """A UDP burst of `flows` 2-packet flows from 10 subscribers (at `rate`
        flows a second, 0: at once) through a daemon started with
        `conntrack_extra`, with `alongside(stop_event)` in a thread while it
        is sent; asserts exact totals against nftables counters in the gateway
        and returns the last status line's fields (a dict of name -> int), with
        the daemon's /metrics before it stopped under "metrics"."""
        self.replace_daemon(conntrack_extra=conntrack_extra)
        sources = self.lab.sub_v4[:10]
        self.count_forwarded(sources)
        for i, a in enumerate(sources):
            self.daemon.add_subscriber(f"burst-{i}", a + "/32")
        self.daemon.start()
        stop = threading.Event()
        helper = threading.Thread(target=alongside, args=(stop,)) if alongside else None
        if helper:
            helper.start()
        try:
            self.send_flows(flows, sources, rate)
        finally:
            stop.set()
            if helper:
                helper.join()
        wait_for(lambda: self.lab.conntrack_count() == 0, timeout=240, interval=0.5,
                 what="the burst's DESTROY events")
        expected = self.forwarded(sources, "burst", 2 * flows)
        got = self.wait_totals(expected, timeout=120)
        self.assertEqual(got, expected)
        metrics = self.daemon.metrics()
        self.assertEqual(self.daemon.stop(), 0)
        status = re.findall(r"status: (.*)", self.daemon.read_log())
        self.assertTrue(status, "no status line at exit")
        words = status[-1].split()
        fields = {words[i]: int(words[i + 1]) for i in range(0, len(words) - 1, 2)}
        fields["metrics"] = metrics
        return fields

    def count_forwarded(self, sources):
        """Ground truth: an nftables counter per source address in the
        gateway's forward hook. The servers drop the flows silently (no
        ICMP errors flowing back)."""
        counters = "".join(f"    ip saddr {a} counter\n" for a in sources)
        self.lab.run(self.lab.gw, ["nft", "-f", "-"], input=(
            "table ip truth {\n  chain count_forward {\n    type filter hook forward priority 0;\n"
            + counters + "  }\n}\n"))
        self.addCleanup(self.lab.run, self.lab.gw, ["nft", "delete", "table", "ip", "truth"])
        self.lab.run(self.lab.srv, ["nft", "-f", "-"], input=(
            "table ip sink {\n  chain drop_input {\n    type filter hook input priority 0;\n"
            "    udp dport 1-65000 drop\n  }\n}\n"))
        self.addCleanup(self.lab.run, self.lab.srv, ["nft", "delete", "table", "ip", "sink"])

    def forwarded(self, sources, prefix, packets):
        """{"<prefix>-<i>": expected totals} of sources[i] from the counters of
        count_forwarded, which must have seen `packets` packets in all."""
        truth = {}
        listing = self.lab.run(self.lab.gw, ["nft", "-j", "list", "table", "ip", "truth"]).stdout
        for item in json.loads(listing)["nftables"]:
            rule = item.get("rule")
            if rule:
                addr = rule["expr"][0]["match"]["right"]
                c = rule["expr"][1]["counter"]
                truth[f"{prefix}-{sources.index(addr)}"] = (c["bytes"], c["packets"])
        self.assertEqual(sum(p for _, p in truth.values()), packets, "the lab dropped packets")
        return {k: {"up_bytes": b, "up_packets": p, "down_bytes": 0, "down_packets": 0}
                for k, (b, p) in truth.items()}

    def send_flows(self, flows, sources, rate=0):
        """`flows` UDP flows of 2 packets (100 bytes of payload) from `sources`
        in turn, at `rate` flows a second (0: at once)."""
        flowgen = os.environ.get("CTQUOTA_FLOWGEN", "build/ci/tests/bench/flowgen")
        out = self.lab.run(self.lab.sub,
                           [flowgen, SRV_V4, str(flows), str(rate), "2", "100"] + sources).stdout
        self.assertEqual(json.loads(out)["flows"], flows)

    def test_event_overrun_is_counted_resynced_and_totals_stay_exact(self):
        # A tiny event buffer and a burst far larger than it: ENOBUFS must happen,
        # and reliable delivery + resync must still give exact totals.
        status = self.run_burst(20000, 'event_buffer_bytes = "32KiB"\n'
                                       'max_event_buffer_bytes = "64MiB"\n')
        self.assertGreater(status["enobufs"], 0,
                           "the burst did not overrun the buffer; the test proves nothing")
        self.assertEqual(status["lost_flows"], 0)

    def test_full_queue_waits_instead_of_dropping_destroy_events(self):
        # A hand-off queue of 256 samples under a 200k-flow burst: with
        # reliable delivery the event reader must wait for room, never drop a
        # batch (a resync cannot bring back flows that already ended).
        status = self.run_burst(200000, "queue_samples = 256\n"
                                        'event_buffer_bytes = "128MiB"\n')
        self.assertGreater(status["queue_full_waits"], 0,
                           "the queue never filled; the test proves nothing")
        self.assertEqual(status["queue_overflows"], 0)
        self.assertEqual(status["lost_flows"], 0)

    def test_dumps_wait_while_destroy_events_arrive_fast_but_not_longer_than_the_bound(self):
        # 3000 flows a second whose entries expire after 1 s and are ended
        # at once (the test lists the table ten times a second, which ends
        # expired entries as any dump does): ~3000 DESTROYs a second against
        # a threshold of 500. Dumps (poll 1 s) must wait, but at most 2 s
        # longer, and the totals stay exact.
        self.lab.run(self.lab.gw, ["sysctl", "-qw", "net.netfilter.nf_conntrack_udp_timeout=1"])

        dumps_at = []  # (time, dumps so far) while sending

        def end_expired(stop):
            while not stop.wait(0.1):
                self.lab.run(self.lab.gw, ["conntrack", "-L", "-p", "icmp"], check=False)
                dumps = self.daemon.metrics().get("ctquota_dumps_total")
                if dumps is not None and (not dumps_at or dumps_at[-1][1] != dumps):
                    dumps_at.append((time.monotonic(), dumps))

        status = self.run_burst(24000, 'dump_defer_events_per_s = 500\ndump_defer_max = "2s"\n',
                                rate=3000, alongside=end_expired)
        deferred = status["metrics"].get("ctquota_dumps_deferred_total", 0)
        self.assertGreater(deferred, 0, "no dump waited; the test proves nothing")
        # Between dumps at most poll (1 s) + dump_defer_max (2 s), plus a
        # second of slack for the dump itself and this sampling.
        gaps = [b[0] - a[0] for a, b in zip(dumps_at, dumps_at[1:])]
        self.assertGreaterEqual(len(gaps), 2, f"too few dumps seen while sending: {dumps_at}")
        self.assertLessEqual(max(gaps), 4.0, f"a dump waited past the bound: {gaps}")
        self.assertGreater(max(gaps), 1.5, f"no gap shows a dump waiting: {gaps}")
        self.assertEqual(status["lost_flows"], 0)

    def test_long_lived_tcp_is_visible_while_open_and_exact_at_the_end(self):
        self.run_long_tcp()
        self.assertEqual(self.daemon.stop(), 0)
        self.assertIn("signal 15: flushing and stopping", self.daemon.read_log())

    def test_long_lived_tcp_over_ipv6_is_exact(self):
        self.run_long_tcp(src=self.lab.sub_v6[1], seconds=5.0)

    def test_flow_ending_while_the_daemon_is_down_lands_in_its_own_hour(self):
        # The daemon's clock (offset file) is put 20 s before an hour boundary.
        # Flows are sent, the daemon is killed, the flows end while it is down
        # (their DESTROYs wait in the event socket the fd store keeps), and it
        # comes back after the boundary: the bytes belong to the hour in
        # which the flows ended, not to the hour of the restart.
        addresses = self.lab.sub_v4[:3] + self.lab.sub_v6[:1]
        for i, addr in enumerate(addresses):
            self.daemon.add_subscriber(f"hour-{i}", addr + ("/128" if ":" in addr else "/32"))
        offset_file = os.path.join(self.daemon.dir, "clock-offset")
        boundary = (int(time.time()) // 3600 + 2) * 3600  # an hour boundary on the daemon's clock
        offset = boundary - 20 - time.time()
        with open(offset_file, "w") as f:
            f.write(f"{offset:.3f}\n")
        self.daemon.write_config(extra_config=f'[clock]\noffset_file = "{offset_file}"\n')
        self.daemon.start()
        start_server(self.lab, "udp-server", UDP_PORT)
        truth = self.send_udp(addresses)
        self.assertEqual(self.daemon.stop("KILL"), -9)
        # The last packet went 10 s before the boundary: the flows expire at
        # most 3 s later, and the test's dumps end them then (the kernel's
        # stop time; its garbage collector alone may take up to a minute).
        self.assertLess(time.time() + offset, boundary - 10, "sending took too long")
        wait_for(lambda: self.lab.conntrack_dumped() == 0 and self.lab.conntrack_count() == 0,
                 timeout=60, interval=0.25, what="the flows to end while the daemon is down")
        wait_for(lambda: time.time() + offset > boundary + 1, timeout=30, interval=0.25,
                 what="the daemon's clock to pass the hour boundary")
        self.daemon.start()
        expected = {f"hour-{i}": truth[a] for i, a in enumerate(addresses)}
        self.assertEqual(self.wait_totals(expected), expected)
        rows = self.daemon.query("SELECT s.external_id, extract(epoch FROM h.hour)::bigint, "
                                 "h.up_bytes FROM usage_hourly h JOIN subscribers s "
                                 "ON s.id = h.subscriber_id")
        self.assertEqual({(r[0], int(r[1])) for r in rows},
                         {(f"hour-{i}", boundary - 3600) for i in range(len(addresses))},
                         "usage landed outside the hour the flows ended in")
        self.assertIn("the socket of the previous run, handed back", self.daemon.read_log())

    def test_kill_9_and_restart_mid_connection_stays_exact(self):
        self.assertTrue(self.run_long_tcp(kill_at=4, seconds=9.0))
        self.assertIn("live flows restored", self.daemon.read_log())


if __name__ == "__main__":
    unittest.main(verbosity=2)
