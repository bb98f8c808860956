"""End to end: quota policies enforced by ctquotad on a real gateway namespace.
Real TCP traffic, the shipped plans (policies/) with tiny per-cycle quota
overrides, the REST API, and the kernel's nftables/tc state read back."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from enforce_harness import POLICIES as POLICIES_DIR  # noqa: E402
from enforce_harness import PORTAL_V4, EnforcementLab  # noqa: E402
from lab import SRV_V4, SRV_V6, wait_for  # noqa: E402
from topology import GW_NFT, SUB_GW_LL6, SUB_GW_V4  # noqa: E402

THROTTLE_DOWN_BPS = 2_000_000  # home-100g
# HTB counts Ethernet frames (on the shaper, redirected from sub0); TCP payload is 1448 of every 1514 bytes.
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

    def test_throttle_then_block_in_one_plan(self):
        """A plan that throttles at 50 % and blocks at 100 %: the shaper's
        drops are not billed (daemon/drops/), so no kernel quota may count
        them while the downloads are shaped; the flush that crosses the block
        tier blocks. Before, the quota ran out below the tier and the
        subscriber stayed 'throttled' with every packet dropped."""
        env, src = self.env, self.lab.sub_v4[3]
        plan = {"cycle": {"kind": "monthly", "day": 1, "time": "00:00", "time_zone": "UTC"},
                "quota_bytes": 3_000_000, "counts": "both",
                "tiers": [{"at_percent": 50, "action": "throttle", "down_bps": 2_000_000,
                           "up_bps": 1_000_000},
                          {"at_percent": 100, "action": "block"}]}
        code, body = env.api("PUT", "/api/v1/plans/thr-then-blk", plan)
        self.assertIn(code, (200, 201), body)
        env.add_subscriber("tb-v4", "thr-then-blk", [src + "/32"])
        dl = env.download(src, 2_500_000, 40)
        self.addCleanup(dl.stop)
        env.wait_state("tb-v4", "throttled", timeout=15)
        env.wait_state("tb-v4", "blocked", timeout=25)
        wait_for(lambda: dl.stalled_for(1.5), 10, what="the transfer to stop")
        billed = wait_for(lambda: (lambda s: s["counted_bytes"] if s["counted_bytes"] >= 3_000_000
                                   else None)(env.subscriber("tb-v4")), 10, what="the final usage")
        over = billed - 3_000_000
        log(f"tb-v4: throttled, then blocked; billed {over} B past the allowance")
        # Blocked by the flush that crossed: the plan's rate for about a flush interval.
        self.assertLess(over, 2_000_000 // 8 * 2)

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


class PlanFilesAndOutages(unittest.TestCase):
    """The error policy as the README states it: a bad plan file is fatal at
    start-up and refused on SIGHUP; changes notified while the engine's
    database calls fail are acted on once they work again."""

    def setUp(self):
        self.policies = tempfile.mkdtemp(prefix="ctq-policies-")
        self.addCleanup(shutil.rmtree, self.policies, True)
        for name in os.listdir(POLICIES_DIR):
            if name.endswith(".toml"):
                shutil.copy(os.path.join(POLICIES_DIR, name), self.policies)
        self.home = os.path.join(self.policies, "home-100g.toml")

    def rewrite_home(self, old, new):
        with open(self.home) as f:
            text = f.read()
        self.assertIn(old, text)
        with open(self.home, "w") as f:
            f.write(text.replace(old, new))
        line = text[:text.index(old)].count("\n") + 1
        return f"{self.home}:{line}"

    def plan_quota(self, env):
        code, body = env.api("GET", "/api/v1/plans/home-100g")
        self.assertEqual(code, 200, body)
        return body["quota_bytes"]

    def test_bad_plan_file_refused_on_sighup_and_fatal_at_start(self):
        env = EnforcementLab(n_v4=1, n_v6=0, policies_dir=self.policies)
        self.addCleanup(env.close)
        self.assertEqual(self.plan_quota(env), 100 * 10 ** 9)
        where = self.rewrite_home('quota = "100 GB"', 'quota = "lots"')
        env.daemon.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "plan files rejected, the plans in force stay: " + where in env.daemon.read_log(),
                 10, what="the bad file to be refused")
        self.assertEqual(self.plan_quota(env), 100 * 10 ** 9)
        self.assertIsNone(env.daemon.proc.poll())
        self.rewrite_home('quota = "lots"', 'quota = "50 GB"')
        env.daemon.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: self.plan_quota(env) == 50 * 10 ** 9, 10, what="the fixed file to apply")
        env.daemon.stop()
        where = self.rewrite_home('quota = "50 GB"', 'quota = -1')
        started = time.monotonic()
        proc = env.lab.start(env.lab.gw, [env.daemon.binary, "--config", env.daemon.config],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        out, _ = proc.communicate(timeout=30)
        log(f"bad plan file at start: exit {proc.returncode} after {time.monotonic() - started:.2f} s")
        self.assertEqual(proc.returncode, 1, out)
        self.assertIn(f"ctquotad: {where}: quota: ", out)
        self.assertNotIn("ctquotad running", out)

    def test_a_change_notified_while_the_engine_fails_is_applied_after(self):
        # No periodic reconcile to hide a lost notification.
        env = EnforcementLab(n_v4=1, n_v6=0, policies_extra='reconcile_interval = "1h"\n')
        self.addCleanup(env.close)
        src = env.lab.sub_v4[0]
        env.add_subscriber("lost", "prepaid-10g", [src + "/32"], 0)
        env.wait_state("lost", "blocked")
        errors_before = env.metric("ctquota_db_errors_total") or 0
        # The top-up commits (its NOTIFY is delivered) together with a fault
        # every engine round runs into until it is repaired.
        env.daemon.query("BEGIN; INSERT INTO topups (subscriber_id, bytes, created_at, expires_at) "
                         "SELECT id, 1000000000, now(), now() + interval '1 day' FROM subscribers "
                         "WHERE external_id = 'lost'; ALTER TABLE topups RENAME TO topups_away; COMMIT")
        wait_for(lambda: env.metric("ctquota_db_errors_total") > errors_before, 10,
                 what="the engine to fail on the missing table")
        wait_for(lambda: 'policy engine: ' in env.daemon.read_log() and
                 'relation "topups" does not exist' in env.daemon.read_log(), 10,
                 what="the engine's round to fail on the missing table")
        env.daemon.query("ALTER TABLE topups_away RENAME TO topups")
        repaired = time.monotonic()
        env.wait_state("lost", "normal", timeout=15)
        wait_for(lambda: env.reachable(src, SRV_V4, timeout=0.3), 5, what="the block to be lifted")
        log(f"notified during the fault: applied {time.monotonic() - repaired:.2f} s after the repair")


class KernelRepair(unittest.TestCase):
    """Kernel state lost under the daemon (nftables service restart, the
    table or the root qdisc deleted, the interface created again) is rebuilt
    within the repair window, with real traffic checking it: an IPv4 and an
    IPv6 block, a throttle, and a kernel quota armed for a subscriber with
    bytes left."""

    PING_INTERVAL = 0.02

    @classmethod
    def setUpClass(cls):
        cls.env = EnforcementLab(n_v4=3, n_v6=1)
        cls.lab = cls.env.lab
        cls.blk, cls.thr = cls.lab.sub_v4[0], cls.lab.sub_v4[1]
        cls.blk6 = cls.lab.sub_v6[0]
        cls.env.add_subscriber("rep-blk", "prepaid-10g", [cls.blk + "/32"], 0)
        cls.env.add_subscriber("rep-blk6", "prepaid-10g", [cls.lab.sub_v6_prefixes[0]], 0)
        cls.env.add_subscriber("rep-thr", "home-100g", [cls.thr + "/32"], 0)
        cls.env.add_subscriber("rep-armed", "prepaid-10g", [cls.lab.sub_v4[2] + "/32"],
                               50_000_000)
        cls.env.wait_state("rep-blk", "blocked")
        cls.env.wait_state("rep-blk6", "blocked")
        cls.env.wait_state("rep-thr", "throttled")
        cls.armed = wait_for(cls.quotas, 10, what="rep-armed's kernel quota")
        # Someone else's table: a repair must never touch it.
        cls.lab.run(cls.lab.gw, ["nft", "add", "table", "inet", "isp_own"])

    @classmethod
    def tearDownClass(cls):
        cls.env.close()

    @classmethod
    def quotas(cls):
        """The names of ctquota's kernel quotas, sorted (empty: none; their
        limits may move with quota slices)."""
        out = cls.lab.run(cls.lab.gw, ["nft", "-j", "list", "quotas", "table", "inet", "ctquota"],
                          check=False).stdout
        return sorted(i["quota"]["name"] for i in json.loads(out or '{"nftables": []}')["nftables"]
                      if "quota" in i)

    def in_place(self):
        gw = self.lab.gw
        blocked = "".join(self.lab.run(gw, ["nft", "list", "map", "inet", "ctquota", m],
                                       check=False).stdout for m in ("blocked_v4", "blocked_v6"))
        return (self.blk in blocked and self.lab.sub_v6_prefixes[0] in blocked
                and self.quotas() == self.armed
                and any(" rate 2Mbit ceil 2Mbit " in c for c in self.env.tc_classes()))

    def break_and_measure(self, what, commands):
        """Runs `commands` in the gateway with a 50/s ping from the blocked
        subscriber going; returns (seconds until rebuilt, pings answered)."""
        repairs = self.env.metric("ctquota_kernel_repairs_total") or 0
        count = int(5 / self.PING_INTERVAL)
        ping = self.lab.start(self.lab.sub, ["ping", "-n", "-q", "-i", str(self.PING_INTERVAL),
                                             "-c", str(count), "-I", self.blk, SRV_V4])
        time.sleep(0.5)  # the ping runs before the damage (and is dropped: blocked)
        t0 = time.monotonic()
        self.lab.run(self.lab.gw, ["sh", "-ec", commands])
        wait_for(lambda: (self.env.metric("ctquota_kernel_repairs_total") or 0) > repairs and self.in_place(),
                 10, what=f"the kernel state to be rebuilt after {what}")
        window = time.monotonic() - t0
        out, _ = ping.communicate(timeout=30)
        answered = int(out.split(" received")[0].rsplit(",", 1)[-1].strip()) if " received" in out else 0
        log(f"{what}: rebuilt {window:.2f} s after, {answered} of {count} pings answered "
            f"(~{answered * self.PING_INTERVAL:.2f} s of the blocked subscriber getting through)")
        self.assertLess(window, 5.0)
        self.assertLessEqual(answered * self.PING_INTERVAL, 5.0)
        self.assertFalse(self.env.reachable(self.blk, SRV_V4), f"block lost after {what}")
        self.assertFalse(self.env.reachable(self.blk6, SRV_V6), f"IPv6 block lost after {what}")
        self.assertIn("isp_own", self.lab.run(self.lab.gw, ["nft", "list", "tables"]).stdout)
        return window

    def throttle_rate_is_the_plans(self):
        dl = self.env.download(self.thr, 2_500_000, 5)
        self.addCleanup(dl.stop)
        wait_for(lambda: dl.samples and dl.samples[-1][0] >= 4.5, 15, what="the download")
        rate = dl.rate_between(1.5, 4.5)
        expected = THROTTLE_DOWN_BPS / 8 * PAYLOAD_SHARE
        self.assertAlmostEqual(rate, expected, delta=0.2 * expected)

    def test_1_table_deleted(self):
        self.break_and_measure("nft delete table inet ctquota", "nft delete table inet ctquota")
        self.throttle_rate_is_the_plans()

    def test_2_ruleset_flushed_and_reloaded(self):
        # What Debian's nftables service does: flush ruleset, load its own file.
        self.break_and_measure("nft flush ruleset + reload",
                               "nft -f - <<'EOF'\nflush ruleset\n" + GW_NFT +
                               "table inet isp_own {\n}\nEOF")
        self.throttle_rate_is_the_plans()

    def test_3_root_qdisc_deleted(self):
        self.break_and_measure("the shaper's root qdisc deleted", "tc qdisc del dev ctqshaper root")
        self.throttle_rate_is_the_plans()

    def test_5_redirect_deleted(self):
        self.break_and_measure("sub0's clsact (the redirect) deleted", "tc qdisc del dev sub0 clsact")
        self.throttle_rate_is_the_plans()

    def test_4_interface_created_again(self):
        sub_cmds = [f"address add {a}/16 dev eth0" for a in self.lab.sub_v4]
        sub_cmds += [f"address add {a}/64 dev eth0 nodad" for a in self.lab.sub_v6]
        sub_cmds += ["link set eth0 up", f"route add default via {SUB_GW_V4} dev eth0",
                     f"route add default via {SUB_GW_LL6} dev eth0"]
        script = (f"ip link del sub0\n"
                  f"ip link add sub0 type veth peer name eth0 netns {self.lab.sub}\n"
                  f"ip address add {SUB_GW_V4}/16 dev sub0\n"
                  f"ip address add {SUB_GW_LL6}/64 dev sub0 nodad\nip link set sub0 up\n"
                  "ip route add 2001:db8::/48 dev sub0\n"
                  + "".join(f"ip -n {self.lab.sub} {c}\n" for c in sub_cmds))
        self.break_and_measure("sub0 deleted and created again", script)
        self.throttle_rate_is_the_plans()


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
