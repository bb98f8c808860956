"""End to end: quota policies enforced by ctquotad on a real gateway namespace.
Real TCP traffic, the shipped plans (policies/) with tiny per-cycle quota
overrides, the REST API, and the kernel's nftables/tc state read back."""

import os
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from enforce_harness import PORTAL_V4, EnforcementLab  # noqa: E402
from lab import SRV_V4, SRV_V6, wait_for  # noqa: E402

THROTTLE_DOWN_BPS = 2_000_000  # home-100g
# HTB counts Ethernet frames on sub0; TCP payload is 1448 of every 1514 bytes.
PAYLOAD_SHARE = 1448 / 1514


def log(msg):
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {msg}\n")


class Enforcement(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.env = EnforcementLab()
        cls.lab = cls.env.lab

    @classmethod
    def tearDownClass(cls):
        cls.env.close()

    def download_until_throttled(self, sub_id, src, dst, quota):
        env = self.env
        env.add_subscriber(sub_id, "home-100g", [src + ("/128" if ":" in src else "/32")], quota)
        wait_for(lambda: env.subscriber(sub_id)["quota_bytes"] == quota, 10, what="the override")
        dl = env.download(src, 2_500_000, 12, dst=dst)
        self.addCleanup(dl.stop)
        crossed = wait_for(lambda: dl.time_reaching(quota), 15, what="the quota to be crossed")
        wait_for(lambda: dl.samples[-1][0] >= crossed + 5, 15, what="5 s after the crossing")
        rate = dl.rate_between(crossed + 2, crossed + 5)
        expected = THROTTLE_DOWN_BPS / 8 * PAYLOAD_SHARE
        log(f"{sub_id}: crossed {quota} B at {crossed:.1f} s, then {rate * 8 / 1e6:.2f} Mbit/s "
            f"payload (expected {expected * 8 / 1e6:.2f})")
        self.assertAlmostEqual(rate, expected, delta=0.2 * expected)
        self.assertEqual(env.state(sub_id), "throttled")
        # One HTB leaf per throttled subscriber (others in this class may be throttled too).
        leaves = [c for c in env.tc_classes() if " rate 2Mbit ceil 2Mbit " in c]
        self.assertGreaterEqual(len(leaves), 1, env.tc_classes())
        self.assertEqual(len(leaves), env.metric("ctquota_subscribers_throttled"), env.tc_classes())
        # The daemon's own measure: flush commit -> kernel, for rounds that changed it.
        rounds = env.metric("ctquota_flush_to_kernel_seconds_count")
        self.assertGreaterEqual(rounds, 1)
        mean_ms = env.metric("ctquota_flush_to_kernel_seconds_sum") / rounds * 1000
        log(f"flush -> kernel: {rounds:.0f} rounds, mean {mean_ms:.1f} ms")
        self.assertLess(mean_ms, 1000)
        return dl

    def test_throttle_ipv4_within_2s_of_crossing(self):
        self.download_until_throttled("thr-v4", self.lab.sub_v4[0], SRV_V4, 3_000_000)
        events = self.env.api("GET", "/api/v1/subscribers/thr-v4/events")[1]["items"]
        self.assertTrue(any(e["kind"] == "state" and e["to_state"] == "throttled" for e in events),
                        events)

    def test_throttle_ipv6_within_2s_of_crossing(self):
        self.download_until_throttled("thr-v6", self.lab.sub_v6[0], SRV_V6, 3_000_000)

    def test_prepaid_block_portal_and_topup(self):
        env, src = self.env, self.lab.sub_v4[1]
        quota = 2_000_000
        env.add_subscriber("pre-v4", "prepaid-10g", [src + "/32"], quota)
        wait_for(lambda: env.subscriber("pre-v4")["quota_bytes"] == quota, 10, what="the override")
        self.assertTrue(env.reachable(src, SRV_V4))
        passed_before = env.passed_bytes()
        dl = env.download(src, 1_000_000, 30)
        self.addCleanup(dl.stop)
        wait_for(lambda: dl.received() > 0 and dl.stalled_for(1.5), 20,
                 what="the established transfer to stop")
        env.wait_state("pre-v4", "blocked", timeout=5)
        overshoot = env.passed_bytes() - passed_before - quota
        log(f"pre-v4: transfer stopped after {dl.received()} B payload; overshoot past the "
            f"allowance, measured at the receivers: {overshoot} B")
        self.assertLess(overshoot, 64 * 1024)  # the kernel quota cut it, not the next poll
        self.assertFalse(env.reachable(src, SRV_V4), "a new connection got through a block")
        self.assertTrue(env.reachable(src, PORTAL_V4), "the portal must stay reachable")

        started = time.monotonic()
        code, body = env.api("POST", "/api/v1/subscribers/pre-v4/topups", {"bytes": 50_000_000},
                             headers=["Idempotency-Key: e2e-topup-1"])
        self.assertEqual(code, 201, body)
        wait_for(lambda: env.reachable(src, SRV_V4, timeout=0.3), 2, what="traffic after the top-up")
        log(f"pre-v4: reachable {time.monotonic() - started:.2f} s after the top-up")
        self.assertEqual(env.state("pre-v4"), "normal")

    def test_usage_through_the_api_equals_what_passed(self):
        env, src = self.env, self.lab.sub_v4[2]
        env.add_subscriber("acct-v4", "home-100g", [src + "/32"])
        env.count_address(src)
        dl = env.download(src, 400_000, 2)
        dl.proc.wait(timeout=30)
        up, down = env.counted()
        self.assertGreater(down, 700_000)
        # The closed connection's DESTROY carries its final counters.
        got = wait_for(lambda: (lambda s: s if s["down_bytes"] == down and s["up_bytes"] == up
                                else None)(env.subscriber("acct-v4")), 30,
                       what=f"API usage to equal {up} up / {down} down")
        self.assertEqual(got["counted_bytes"], up + down)


class Restart(unittest.TestCase):
    """Restarting ctquotad changes nothing in the kernel, not even briefly."""

    def test_restart_keeps_kernel_state(self):
        env = EnforcementLab()
        self.addCleanup(env.close)
        lab = env.lab
        env.add_subscriber("r-thr", "home-100g", [lab.sub_v4[0] + "/32", lab.sub_v6[0] + "/128"], 0)
        env.add_subscriber("r-blk", "prepaid-10g", [lab.sub_v4[1] + "/32"], 0)
        env.wait_state("r-thr", "throttled")
        env.wait_state("r-blk", "blocked")
        before = (normalized(env.nft_ruleset()), env.tc_classes())
        self.assertIn({"table": {"family": "inet", "name": "ctquota", "handle": ANY_HANDLE}},
                      [with_any_handle(i) for i in before[0]])
        self.assertTrue(any(" rate 2Mbit ceil 2Mbit " in c for c in before[1]), before[1])
        env.daemon.stop()
        self.assertEqual((normalized(env.nft_ruleset()), env.tc_classes()), before,
                         "stopping must leave the kernel state in place")
        env.daemon.start()
        # Poll the kernel while the new daemon reconciles: never a gap.
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            self.assertEqual(normalized(env.nft_ruleset()), before[0])
            self.assertEqual(env.tc_classes(), before[1])
        self.assertFalse(env.reachable(lab.sub_v4[1], SRV_V4), "block lifted by a restart")


class NewCycle(unittest.TestCase):
    def test_new_cycle_releases_a_blocked_subscriber(self):
        offset = os.path.join(tempfile.mkdtemp(prefix="ctq-clock-"), "offset")
        env = EnforcementLab(offset_file=offset)
        self.addCleanup(env.close)
        src = env.lab.sub_v4[0]
        env.add_subscriber("cyc", "prepaid-10g", [src + "/32"], 0)  # 0 bytes: blocked at once
        env.wait_state("cyc", "blocked")
        self.assertFalse(env.reachable(src, SRV_V4))
        cycle_end = env.subscriber("cyc")["cycle_end"]
        env.set_clock_offset(30 * 86400 + 2)  # prepaid-10g: 30-day cycles from activation
        wait_for(lambda: env.reachable(src, SRV_V4, timeout=0.3), 5,
                 what="the new cycle to lift the block")
        sub = env.subscriber("cyc")
        self.assertEqual(sub["state"]["state"], "normal")
        self.assertEqual(sub["cycle_start"], cycle_end)
        kinds = [e["kind"] for e in env.api("GET", "/api/v1/subscribers/cyc/events")[1]["items"]]
        self.assertIn("cycle", kinds)


ANY_HANDLE = "*"


def with_any_handle(item):
    return {k: dict(v, handle=ANY_HANDLE) if isinstance(v, dict) and "handle" in v else v
            for k, v in item.items()}


def normalized(ruleset):
    """nft -j output without what moves with traffic: quota usage and counters."""
    if ruleset is None:
        return None

    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items()
                    if k != "used" and not (k == "counter" and isinstance(v, dict))}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return [strip(item) for item in ruleset.get("nftables", []) if "metainfo" not in item]


if __name__ == "__main__":
    unittest.main(verbosity=2)
