#!/usr/bin/env python3
"""End to end: real packets through a gateway namespace, real conntrack,
ctquotad, real PostgreSQL. The totals in the database must equal the ground
truth exactly.

  test_udp_exact            >= 50 IPv4 + 5 IPv6 subscribers (plus one with an
                            IPv4 address and an IPv6 prefix, plus an address
                            bound to nobody), UDP flows of assorted sizes, some
                            with many packets, some spanning several polls:
                            every subscriber's up/down bytes/packets equal
                            the ground truth, and stay equal.
  test_long_tcp             long-lived paced TCP connections (IPv4, IPv6)
                            spanning several polls: usage shows in the
                            database while they run (within poll + flush +
                            margin), and the final totals equal the kernel's
                            counters for them (their DESTROY events).
  test_long_tcp_kill9       the same with `kill -9` of the daemon in the
                            middle and a restart; also UDP flows finished
                            and flushed before the kill are not counted twice.

Environment:
  CTQUOTA_BIN            the daemon (default: build/daemon/ctquotad)
  CTQUOTA_TEST_DB_URL    libpq URL of a PostgreSQL the test may create
                         databases in (unix socket: reachable from every
                         namespace). Unset: a throwaway cluster is started
                         with deploy/pg-throwaway.sh, in a namespace of its own.
  CTQ_SEED               seed of the UDP plan (default fixed)
  CTQ_KEEP_LOGS=1        keep the daemon's and tools' logs (path printed)

Run as root: python3 tests/netns/test_accounting.py [-v] [Test.test_name]
"""

import json
import os
import signal
import sys
import time
import unittest

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import topology as T  # noqa: E402

BIN = os.environ.get("CTQUOTA_BIN", os.path.join(T.ROOT, "build", "daemon", "ctquotad"))
POLL = 2.0
FLUSH = 0.5
MARGIN = 3.0          # scheduling slack on a loaded 2-core machine
SETTLE = 60.0         # deadline for totals to reach their final value
SEED = int(os.environ.get("CTQ_SEED", "4242"))
COUNTERS = ("up_bytes", "down_bytes", "up_packets", "down_packets")

PG = None             # ThrowawayPg when CTQUOTA_TEST_DB_URL is unset
BASE_URL = None


def setUpModule():
    global PG, BASE_URL
    if os.geteuid() != 0:
        raise unittest.SkipTest("needs root (network namespaces, nftables, conntrack)")
    if not os.access(BIN, os.X_OK):
        raise RuntimeError(f"ctquotad not found at {BIN}: build it or set CTQUOTA_BIN")
    BASE_URL = os.environ.get("CTQUOTA_TEST_DB_URL")
    if not BASE_URL:
        PG = T.ThrowawayPg().create()
        BASE_URL = PG.url


def tearDownModule():
    if PG is not None:
        PG.destroy()


class Daemon:
    """ctquotad for one test: its own database and config; CLI calls run in
    the host namespace (they only talk to PostgreSQL over its unix socket),
    the daemon runs in the topology's gateway namespace."""

    _n = 0

    def __init__(self, topo, base_url):
        Daemon._n += 1
        self.topo = topo
        self.base_url = base_url
        self.dbname = f"ctq_acct_{os.getpid()}_{Daemon._n}"
        T.psql(base_url, f'CREATE DATABASE "{self.dbname}"')
        self.url = T.with_dbname(base_url, self.dbname)
        self.config = os.path.join(topo.workdir, "ctquotad.toml")
        with open(self.config, "w") as f:
            f.write(f"""[database]
url = "{self.url}"
[conntrack]
poll_interval = "{int(POLL * 1000)}ms"
event_buffer_bytes = "64MiB"
[accounting]
flush_interval = "{int(FLUSH * 1000)}ms"
gateway_id = "gw-test"
""")
        self.proc = None
        self.runs = 0

    def cli(self, *args, check=True):
        return T.sh([BIN, "--config", self.config] + list(args), check=check, timeout=60)

    def migrate(self):
        self.cli("migrate")

    def add_subscriber(self, ident, *prefixes):
        argv = ["subscriber", "add", ident]
        for p in prefixes:
            argv += ["--address", p]
        self.cli(*argv)

    def start(self):
        self.runs += 1
        self.proc = self.topo.start_in(self.topo.gw, [BIN, "--config", self.config],
                                       name=f"ctquotad-{self.runs}", capture=False)
        T.wait_until(lambda: self._log_has("ctquotad running") or not self.proc.alive(), 60,
                     what="ctquotad to start")
        if not self.proc.alive():
            raise RuntimeError(f"ctquotad exited at start-up: {self.proc.tail()}")

    def _log_has(self, text):
        with open(self.proc.log_path, "rb") as f:
            return text.encode() in f.read()

    def stop(self):
        """SIGTERM: flushes and exits 0."""
        return self.proc.stop(signal.SIGTERM, timeout=30)

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.popen.wait(10)

    def usage(self):
        """{subscriber_id: {counter: int}} from the usage_current view."""
        out = T.psql(self.url, "SELECT subscriber_id, up_bytes, down_bytes, up_packets, "
                               "down_packets FROM usage_current")
        rows = {}
        for line in out.splitlines():
            if not line.strip():
                continue
            sid, *vals = line.split("|")
            rows[sid] = dict(zip(COUNTERS, (int(v) for v in vals)))
        return rows

    def usage_cli(self, ident):
        return json.loads(self.cli("usage", ident).stdout)

    def log_tail(self, n=30):
        return self.proc.tail(n) if self.proc else "(not started)"

    def drop(self):
        T.psql(self.base_url, f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)',
               check=False)


def zero():
    return dict.fromkeys(COUNTERS, 0)


def add_into(total, counters):
    for k in COUNTERS:
        total[k] += counters[k]


class AccountingTest(unittest.TestCase):
    N_V4 = 52   # 50 single-address subscribers, 1 in "dual", 1 bound to nobody
    N_V6 = 6    # 5 single-prefix subscribers, 1 in "dual"

    def setUp(self):
        self.topo = T.Topology(self.N_V4, self.N_V6).create()
        self.addCleanup(self.topo.destroy)
        self.daemon = Daemon(self.topo, BASE_URL)
        self.addCleanup(self.daemon.drop)
        self.daemon.migrate()
        # address -> subscriber id; None: bound to nobody
        self.owner = {}
        for i, a in enumerate(self.topo.sub_v4[:50]):
            self.owner[a] = f"v4-{i + 1}"
            self.daemon.add_subscriber(f"v4-{i + 1}", f"{a}/32")
        for k, (a, p) in enumerate(zip(self.topo.sub_v6[:5], self.topo.sub_v6_prefixes[:5])):
            self.owner[a] = f"v6-{k + 1}"
            self.daemon.add_subscriber(f"v6-{k + 1}", p)
        dual_v4, dual_v6 = self.topo.sub_v4[50], self.topo.sub_v6[5]
        self.daemon.add_subscriber("dual", f"{dual_v4}/32", self.topo.sub_v6_prefixes[5])
        self.owner[dual_v4] = self.owner[dual_v6] = "dual"
        self.owner[self.topo.sub_v4[51]] = None
        self.watcher = T.CtWatcher(self.topo).start()
        self.addCleanup(self.watcher.stop)
        self.daemon.start()
        self.addCleanup(self._stop_daemon)

    def _stop_daemon(self):
        if self.daemon.proc is not None and self.daemon.proc.alive():
            rc = self.daemon.stop()
            if rc != 0:
                raise AssertionError(f"ctquotad exited {rc} on SIGTERM: {self.daemon.log_tail()}")

    # ------------------------------------------------------------ helpers

    def expected_from_truth(self, truth):
        exp = {}
        for addr, c in truth["subscribers"].items():
            sid = self.owner[addr]
            if sid is not None:
                add_into(exp.setdefault(sid, zero()), c)
        return exp

    def wait_for_totals(self, expected, what, deadline=SETTLE):
        """Polls usage_current until every subscriber in `expected` has
        exactly those totals (and nobody else has any), then checks they
        stay so for two more poll + flush periods. Fails with the diff."""
        def matches():
            got = self.daemon.usage()
            got = {k: v for k, v in got.items() if any(v.values())}
            return got if got == expected else None

        try:
            T.wait_until(matches, deadline, interval=0.2, what=what)
            reached = True
        except TimeoutError:
            reached = False
        if not reached:
            self.fail_with_diff(expected, what)
        settle_until = time.monotonic() + 2 * (POLL + FLUSH)
        while time.monotonic() < settle_until:
            if matches() is None:
                self.fail_with_diff(expected, what + " (changed after being equal)")
            time.sleep(0.25)  # sampling period of the stability check

    def fail_with_diff(self, expected, what):
        got = self.daemon.usage()
        lines = []
        for sid in sorted(set(expected) | set(got)):
            e, g = expected.get(sid, zero()), got.get(sid, zero())
            if e != g:
                lines.append(f"  {sid}: db {g} expected {e} diff "
                             f"{ {k: g[k] - e[k] for k in COUNTERS} }")
        self.fail(f"{what}: {len(lines)} subscribers differ:\n" + "\n".join(lines[:20]) +
                  f"\nctquotad log:{self.daemon.log_tail()}")

    def wait_usage_at_least(self, sid, up_bytes, deadline, what):
        def ok():
            u = self.daemon.usage().get(sid)
            return u if u and u["up_bytes"] >= up_bytes else None

        try:
            return T.wait_until(ok, max(0.1, deadline - time.monotonic()), interval=0.1, what=what)
        except TimeoutError:
            pass
        self.fail(f"{what}: {sid} has {self.daemon.usage().get(sid)} in the database, "
                  f"wanted up_bytes >= {up_bytes}\nctquotad log:{self.daemon.log_tail()}")

    def check_kernel_equals_truth(self, truth, destroyed):
        """The tooling's own premise (selfcheck.py): the kernel counted exactly
        the ground truth. If this fails, the test environment is at fault,
        not ctquotad."""
        self.assertEqual(truth["lost_replies"], 0, "UDP replies were lost: ground truth uncertain")
        self.assertEqual(truth["send_errors"], 0)
        keys = T.ground_truth_keys(truth)
        for key, flow in keys.items():
            got = T.sum_counters(destroyed[key])
            want = {k: flow[k] for k in COUNTERS}
            self.assertEqual(got, want, f"kernel and ground truth differ for {key}")

    def run_udp(self, addresses, seed, slow=0):
        plan = T.make_udp_plan(addresses, seed=seed, slow=slow)
        truth = T.udp_traffic(self.topo, plan)
        destroyed = self.watcher.wait_destroyed(T.ground_truth_keys(truth).keys(), timeout=90)
        self.check_kernel_equals_truth(truth, destroyed)
        return plan, truth

    def long_tcp_phase(self, conns, sid_of, observe_points):
        """Checks, at each observe point (seconds into the transfer), that the
        payload sent so far reaches the database within poll + flush + margin
        while the connection still runs."""
        t_start = time.monotonic()
        for at in observe_points:
            T.wait_until(lambda: time.monotonic() - t_start >= at, at + 5, interval=0.05,
                         what="transfer progress")
            for c in conns:
                sent, _ = c.progress()
                t0 = time.monotonic()
                self.wait_usage_at_least(sid_of[c.src], sent, t0 + POLL + FLUSH + MARGIN,
                                         f"{c.src}: {sent} bytes sent {at}s into the transfer "
                                         f"not in the database within {POLL + FLUSH + MARGIN}s")
                self.assertTrue(c.running(), f"{c.src}: the connection ended before its usage "
                                             f"showed; make it longer")

    # ------------------------------------------------------------ tests

    def test_udp_exact(self):
        addresses = self.topo.subscriber_addresses()
        plan, truth = self.run_udp(addresses, SEED, slow=8)
        expected = self.expected_from_truth(truth)
        self.assertEqual(len(expected), 56)  # 50 + 5 + dual: everyone had traffic
        self.wait_for_totals(expected, "UDP totals")
        for sid in ("v4-1", "v6-5", "dual"):
            u = self.daemon.usage_cli(sid)
            self.assertEqual(u["subscriber"], sid)
            self.assertEqual({k: u[k] for k in COUNTERS}, expected[sid], f"`usage {sid}`")
        packets, flows = T.plan_totals(plan)
        sys.stderr.write(f"\n  {flows} UDP flows, {packets} requests, {len(expected)} "
                         f"subscribers exact: {sum(e['up_bytes'] for e in expected.values())} "
                         f"bytes up, {sum(e['down_bytes'] for e in expected.values())} down\n")

    def test_long_tcp(self):
        self._long_tcp(kill=False)

    def test_long_tcp_kill9(self):
        self._long_tcp(kill=True)

    def _long_tcp(self, kill):
        expected = {}
        # Short UDP flows of other subscribers, finished and flushed first:
        # after a kill -9 and a restart they must not be counted again.
        udp_addrs = self.topo.sub_v4[10:20] + self.topo.sub_v6[1:3]
        _, truth = self.run_udp(udp_addrs, SEED + 1)
        expected = self.expected_from_truth(truth)
        self.wait_for_totals(expected, "UDP totals before the long connections")

        duration = 20.0 if kill else 12.0
        conns = [T.LongTcp(self.topo, src, up_rate=200_000, down_rate=50_000,
                           duration=duration) for src in (self.topo.sub_v4[0],
                                                          self.topo.sub_v6[0])]
        for c in conns:
            c.start()
        sid_of = {c.src: self.owner[c.src] for c in conns}
        if not kill:
            self.long_tcp_phase(conns, sid_of, [3.0, 7.0])
        else:
            self.long_tcp_phase(conns, sid_of, [3.0])
            self.daemon.kill9()
            # Let the connections move on for more than a poll interval unseen.
            marks = [c.progress()[0] + int(200_000 * (POLL + 1)) for c in conns]
            T.wait_until(lambda: all(c.progress()[0] >= m for c, m in zip(conns, marks)),
                         POLL + 10, what="progress while ctquotad is down")
            self.daemon.start()
            self.long_tcp_phase(conns, sid_of, [0.0, 3.0])
        for c in conns:
            c.wait_done()
        destroyed = self.watcher.wait_destroyed([c.key for c in conns], timeout=60)
        for c in conns:
            self.assertEqual(len(destroyed[c.key]), 1, f"{c.key}: one conntrack entry expected")
            add_into(expected.setdefault(sid_of[c.src], zero()),
                     T.sum_counters(destroyed[c.key]))
        self.wait_for_totals(expected, "final totals equal the kernel's counters" +
                             (" across kill -9 and restart" if kill else ""))
        for c in conns:
            sys.stderr.write(f"\n  {c.key}: {duration:g} s, kernel = database = "
                             f"{T.sum_counters(destroyed[c.key])}")
        if kill:
            with open(self.daemon.proc.log_path, errors="replace") as f:
                restored = [l.strip() for l in f if "checkpoint" in l]
            sys.stderr.write(f"\n  after restart: {restored[-1:] or 'no checkpoint line'}")
        sys.stderr.write("\n")


if __name__ == "__main__":
    unittest.main(verbosity=2)
