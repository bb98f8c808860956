"""End to end: quota slices (leases) across two gateways (issue 13, README
"Several gateways"). Two ctquotad (gw1, gw2) share one PostgreSQL; a
prepaid subscriber's connections to srv1 take gw1, those to srv2 gw2
(multigw_lab.py). Each gateway arms its kernel quota with a slice leased in
PostgreSQL, so at the cut-off the BILLED bytes pass the allowance by at most
2 x 64 KiB however fast both download; a gateway killed with -9 while it
holds a slice keeps it only until the lease expires, then the other can use
the rest; a top-up releases both. Totals are exact against the nftables
counters of what the gateways delivered (the ground truth of multigw_e2e)."""

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from daemon_harness import Daemon  # noqa: E402
from drops_e2e import Bpffs  # noqa: E402
from lab import wait_for  # noqa: E402
from multigw_e2e import Gateway, TwoGateways, log  # noqa: E402
from multigw_lab import TwoGatewayLab  # noqa: E402

BOUND = 2 * 64 * 1024  # N x 64 KiB, N = 2
LEASE_TTL = 6  # s: long enough to kill gw2 while it still holds its slice
FAST = 40_000_000  # B/s asked of each download: more than a gateway passes here


class Leases(TwoGateways):
    @classmethod
    def _start(cls):
        lab = cls.lab
        cls.one_packet_per_segment()

        d1 = Daemon(lab.view(lab.gws[0]), poll="500ms", flush="200ms", gateway_id="gw1",
                    extra_config=cls.gateway_config("gw1", LEASE_TTL))
        cls.daemons.append(d1)
        d2 = Daemon(lab.view(lab.gws[1]), poll="500ms", flush="200ms", gateway_id="gw2",
                    extra_config=cls.gateway_config("gw2", LEASE_TTL), share_db_of=d1)
        cls.daemons.append(d2)
        token = d1.cli("token", "create", "--role", "admin").stdout.strip()
        for d in (d1, d2):
            d.start()
        cls.gw1, cls.gw2 = (Gateway(lab, ns, d, token) for ns, d in zip(lab.gws, (d1, d2)))

    # ----------------------------------------------------------- helpers
    def lease(self, sub_id, gateway):
        """(ceiling, seconds left, the gateway's counted bytes) of its live lease, or None."""
        rows = self.gw1.daemon.query(
            "SELECT l.ceiling_bytes, extract(epoch FROM l.expires_at - now()), "
            "coalesce((SELECT u.up_bytes + u.down_bytes FROM usage_period u WHERE "
            "u.subscriber_id = l.subscriber_id AND u.gateway_id = l.gateway_id AND "
            "u.period_start = l.period_start), 0) FROM quota_lease l JOIN subscribers s ON "
            f"s.id = l.subscriber_id WHERE s.external_id = '{sub_id}' AND "
            f"l.gateway_id = '{gateway}' AND l.expires_at > now()")
        return (int(rows[0][0]), float(rows[0][1]), int(rows[0][2])) if rows else None

    def lease_metrics(self, gw):
        return {k: int(gw.metric(f"ctquota_leases_{k}_total") or 0)
                for k in ("granted", "renewed", "denied", "expired", "lapsed")}

    def both_carrying_traffic(self):
        """A short download through each gateway (an unlimited subscriber): both
        flushed lately, so neither gives a new subscriber a slice unasked."""
        if not hasattr(type(self), "warm"):
            type(self).warm = self.add_subscriber("warm", "home-100g", self.lab.sub_v4[2])
        for gw in (self.gw1, self.gw2):
            self.download(self.lab.sub_v4[2], gw, 2_000_000, 0.3).proc.wait(timeout=30)

    def both_blocked(self, src):
        return self.gw1.blocked(src) and self.gw2.blocked(src)

    def cut_off(self, sub_id, src, allowance, delivered, gateways):
        """Fast downloads through `gateways` until both kernels block; returns
        how far the billed bytes went past `allowance`."""
        dls = [self.download(src, gw, FAST, 60) for gw in gateways]
        try:
            wait_for(lambda: self.both_blocked(src), 60, what=f"{sub_id} blocked on both gateways")
        except TimeoutError:
            self.dump_leases(sub_id)
            raise
        for dl in dls:
            dl.stop()
        per_gw = self.exact(sub_id, delivered)
        over = self.billed(sub_id)["counted_bytes"] - allowance
        log(f"{sub_id}: billed {over} B past the allowance of {allowance} B "
            f"(per gateway {per_gw}; received {[dl.received() for dl in dls]})")
        return over, per_gw

    # -------------------------------------------------------------- tests
    def test_1_cut_off_split_across_both_within_2x64k(self):
        src, quota = self.lab.sub_v4[0], 30_000_000
        self.both_carrying_traffic()
        delivered = self.add_subscriber("cut", "prepaid-10g", src, quota)
        # A little through each first: both carry the subscriber and lease.
        for gw in (self.gw1, self.gw2):
            self.download(src, gw, 2_000_000, 0.5).proc.wait(timeout=30)
        wait_for(lambda: self.lease("cut", "gw1") and self.lease("cut", "gw2"), 10,
                 what="a lease on each gateway")
        over, per_gw = self.cut_off("cut", src, quota, delivered, (self.gw1, self.gw2))
        self.assertGreaterEqual(over, 0, "blocked short of the allowance")
        self.assertLessEqual(over, BOUND)
        self.assertTrue(all(int(v) > 3_000_000 for v in per_gw.values()), per_gw)
        self.assertEqual(self.state_events("cut"), ["blocked"])
        for gw in (self.gw1, self.gw2):
            m = self.lease_metrics(gw)
            log(f"cut: {gw.ns} leases {m}")
            self.assertGreaterEqual(m["granted"], 1, m)

    def test_2_killed_gateway_holds_its_slice_until_the_lease_expires(self):
        src, quota = self.lab.sub_v4[1], 16_000_000
        self.both_carrying_traffic()
        delivered = self.add_subscriber("kill", "prepaid-10g", src, quota)
        type(self).kill_delivered = delivered  # test 3 goes on with it
        dl = self.download(src, self.gw2, 3_000_000, 1.5)
        dl.proc.wait(timeout=30)
        # gw2 billed all it delivered (up and down: what it had not flushed
        # would bill after its restart, past the bound) and still holds unused
        # bytes of its slice.
        self.exact("kill", delivered)
        held = wait_for(lambda: (lambda l: l if l and l[0] > l[2] else None)(
            self.lease("kill", "gw2")), LEASE_TTL, what="gw2's live lease with bytes unused")
        ceiling, left_s, counted = held
        self.assertEqual(self.gw2.daemon.stop("KILL"), -9)
        killed = time.time()
        expires = killed + left_s
        log(f"kill: gw2 killed holding a lease to {ceiling} B ({ceiling - counted} B unused), "
            f"expiring in {left_s:.1f} s")
        expired_before = self.lease_metrics(self.gw1)["expired"]
        dl1 = self.download(src, self.gw1, 3_000_000, 60)
        # gw1 goes on within what gw2 does not hold...
        try:
            wait_for(lambda: dl1.received() > 2_000_000, 10, what="gw1's download to go on")
        except TimeoutError:
            self.dump_leases("kill")
            raise
        wait_for(lambda: self.gw1.blocked(src), 60, what="gw1 to block")
        dl1.stop()
        blocked_at = self.event_at("kill", "blocked")
        log(f"kill: gw1 blocked {blocked_at - killed:.1f} s after the kill "
            f"(gw2's lease expired {expires - killed:.1f} s after it)")
        # ...and reached the block only with gw2's unused bytes, after its lease expired.
        self.assertGreater(blocked_at, expires - 0.5)
        self.assertGreater(self.lease_metrics(self.gw1)["expired"], expired_before)
        self.assertIsNone(self.lease("kill", "gw2"))
        # gw2 back: it blocks too, and billing is exact and within the bound.
        self.gw2.daemon.start()
        wait_for(lambda: self.gw2.blocked(src), 15, what="gw2 to block after its restart")
        self.exact("kill", delivered)
        over = self.billed("kill")["counted_bytes"] - quota
        log(f"kill: billed {over} B past the allowance")
        self.assertGreaterEqual(over, 0)
        self.assertLessEqual(over, BOUND)

    def test_3_topup_releases_both_and_leases_again(self):
        src = self.lab.sub_v4[1]  # blocked on both since test 2
        self.assertTrue(self.both_blocked(src))
        before = self.billed("kill")
        code, body = self.gw2.api("POST", "/api/v1/subscribers/kill/topups", {"bytes": 12_000_000})
        self.assertEqual(code, 201, body)
        for gw in (self.gw1, self.gw2):
            wait_for(lambda: not gw.blocked(src) and gw.reachable(src, timeout=0.3), 2,
                     what=f"{gw.ns} to let traffic through after the top-up")
        allowance = before["quota_bytes"] + 12_000_000
        delivered = self.kill_delivered
        over, _ = self.cut_off("kill", src, allowance, delivered, (self.gw1, self.gw2))
        self.assertGreaterEqual(over, 0)
        self.assertLessEqual(over, BOUND)
        self.assertEqual(self.state_events("kill"), ["blocked", "normal", "blocked"])

    def test_4_database_outage_each_gateway_holds_its_slice(self):
        """The database goes away while both gateways hold a slice: each
        kernel goes on passing what its slice has left, then drops (nothing
        can be renewed, nothing recorded); when the database is back the
        block is recorded once, both kernels block, and billing is exact
        and within the bound."""
        src, quota = self.lab.sub_v4[3], 12_000_000
        self.both_carrying_traffic()
        delivered = self.add_subscriber("dbo", "prepaid-10g", src, quota)
        for gw in (self.gw1, self.gw2):
            self.download(src, gw, 2_000_000, 0.3).proc.wait(timeout=30)
        held = wait_for(lambda: (lambda a, b: (a, b) if a and b else None)(
            self.lease("dbo", "gw1"), self.lease("dbo", "gw2")), 10, what="a lease on each gateway")
        self.exact("dbo", delivered)
        before = delivered.totals()
        # What the two slices still hold, in the gateways' counted bytes.
        unused = sum(ceiling - counted for ceiling, _, counted in held)
        with self.database_down():
            dls = [self.download(src, gw, FAST, 60) for gw in (self.gw1, self.gw2)]
            # Both kernels stop at their slices: nothing more arrives.
            last = {"n": -1, "since": time.monotonic()}

            def stalled():
                n = sum(dl.received() for dl in dls)
                if n != last["n"]:
                    last.update(n=n, since=time.monotonic())
                return time.monotonic() - last["since"] > 1.5
            wait_for(stalled, 30, what="both downloads to stall at the slices' end")
            now = delivered.totals()
            passed = sum(now[k] - before[k] for k in ("up_bytes", "down_bytes"))
            log(f"dbo: {passed} B passed during the outage, slices held {unused} B unused")
            self.assertLessEqual(passed, unused + BOUND)
            self.assertGreater(passed, unused // 2)  # the slices were used, not dropped early
            for gw in (self.gw1, self.gw2):
                self.assertFalse(gw.blocked(src), f"{gw.ns} recorded nothing, it cannot block")
        wait_for(lambda: self.both_blocked(src), 30, what="dbo blocked on both after the outage")
        for dl in dls:
            dl.stop()
        self.exact("dbo", delivered)
        over = self.billed("dbo")["counted_bytes"] - quota
        log(f"dbo: billed {over} B past the allowance")
        self.assertGreaterEqual(over, 0)
        self.assertLessEqual(over, BOUND)
        self.assertEqual(self.state_events("dbo"), ["blocked"])

    def test_5_dual_stack_cut_off_across_both(self):
        """A prepaid subscriber with an IPv4 address and an IPv6 prefix:
        IPv4 through gw1, IPv6 through both. Both families hit each
        gateway's one kernel quota (one slice), the cut-off stays within the
        bound in billed bytes, both families block on both gateways."""
        v4, v6, prefix = self.lab.sub_v4[4], self.lab.sub_v6[0], self.lab.sub_v6_prefix[0]
        quota = 16_000_000
        self.both_carrying_traffic()
        delivered = self.add_subscriber("ds", "prepaid-10g", v4, quota, v6=(v6, prefix))
        paths = [(v4, self.gw1), (v6, self.gw2), (v6, self.gw1)]
        for src, gw in paths:  # a little each first: both gateways lease (as in test 1)
            self.download(src, gw, 2_000_000, 0.5).proc.wait(timeout=30)
        wait_for(lambda: self.lease("ds", "gw1") and self.lease("ds", "gw2"), 10,
                 what="a lease on each gateway")
        dls = [self.download(src, gw, FAST, 60) for src, gw in paths]
        try:
            wait_for(lambda: all(gw.blocked(v4) and gw.blocked(prefix)
                                 for gw in (self.gw1, self.gw2)), 60,
                     what="ds blocked on both gateways, both families")
        except TimeoutError:
            self.dump_leases("ds")
            raise
        for dl in dls:
            dl.stop()
        self.exact("ds", delivered)
        over = self.billed("ds")["counted_bytes"] - quota
        log(f"ds: billed {over} B past the allowance; received {[dl.received() for dl in dls]}")
        self.assertTrue(all(dl.received() > 200_000 for dl in dls))  # each path carried it
        self.assertGreaterEqual(over, 0)
        self.assertLessEqual(over, BOUND)
        self.assertEqual(self.state_events("ds"), ["blocked"])
        for gw in (self.gw1, self.gw2):
            self.assertFalse(gw.reachable(v6), f"IPv6 got through {gw.ns}")
            self.assertFalse(gw.reachable(v4), f"IPv4 got through {gw.ns}")

    def test_6_both_exit_cleanly(self):
        for gw in (self.gw1, self.gw2):
            self.assertEqual(gw.daemon.stop("TERM"), 0, gw.daemon.read_log()[-3000:])


# Only Leases' own tests: the inherited ones run in netns_multigw (None is
# not a test to unittest's loader), and the imported base class is not run here.
for _name in [n for n in vars(TwoGateways) if n.startswith("test_")]:
    if _name not in vars(Leases):
        setattr(Leases, _name, None)
del TwoGateways

if __name__ == "__main__":
    unittest.main(verbosity=2)
