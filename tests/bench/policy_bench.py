#!/usr/bin/env python3
"""Policy engine + enforcer through the whole daemon: N throttled and N
blocked subscribers (default 10k + 10k) in a throwaway database, ctquotad in
a throwaway network namespace with a veth pair as the subscriber interface.

  cold start   ctquotad started with every subscriber over its quota and an
               empty kernel: start -> the kernel holds all 2N states (every
               state is evaluated, recorded with its audit event and applied);
  lift         one committed transaction moves all 2N to an unlimited plan:
               commit -> the kernel holds none;
  re-apply     and back: commit -> the kernel holds all 2N again.

"The kernel holds" = the daemon's log line of the apply/reconcile that
changed them (spdlog time, ms) after which the kernel is read back with nft
and tc and must hold exactly that. Median of --runs runs per step.

  CTQUOTA_TEST_DB_URL=$(deploy/pg-throwaway.sh start /tmp/pgp 54345) \\
    python3 tests/bench/policy_bench.py --bin build-rel/daemon/ctquotad [--smoke]

Needs root. --smoke: 200 + 200 subscribers, one run. Everything it makes is
removed again, also on failure and on SIGTERM/SIGINT.
"""

import argparse
import datetime
import json
import os
import re
import signal
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "netns"))
from api_bench import World  # noqa: E402
from nsproc import sh, wait_until  # noqa: E402

PLANS = {
    "bench-throttle": '[[tiers]]\nat_percent = 100\naction = "throttle"\n'
                      'down = "2 Mbit/s"\nup = "1 Mbit/s"\n',
    "bench-block": '[[tiers]]\nat_percent = 100\naction = "block"\n',
    "bench-open": "",
}
APPLIED = re.compile(r"^(\S+) info enforcement (apply|reconcile): (\d+) subscribers changed")


class PolicyWorld(World):
    def __init__(self, binary, n):
        super().__init__(binary, 2 * n)
        self.per_kind = n
        self.plans_dir = os.path.join(self.dir, "policies")
        os.makedirs(self.plans_dir)
        for name, tiers in PLANS.items():
            quota = "unlimited" if name == "bench-open" else "0"
            with open(os.path.join(self.plans_dir, name + ".toml"), "w") as f:
                f.write(f'quota = "{quota}"\n[cycle]\nkind = "monthly"\n{tiers}')

    def config_text(self):
        return super().config_text() + (
            f'[policies]\ndir = "{self.plans_dir}"\n'
            '[enforce]\nsubscriber_interface = "ctqsub0"\n')

    def prepare_namespace(self):
        super().prepare_namespace()
        self.in_ns(["ip", "link", "add", "name", "ctqsub0", "type", "veth", "peer", "name",
                    "ctqsub1"])
        self.in_ns(["ip", "link", "set", "dev", "ctqsub0", "up"])

    def sql(self, text):
        sh(["psql", self.url, "-Xq", "-v", "ON_ERROR_STOP=1", "-c", text], timeout=600)

    def set_plans(self, throttle, block):
        """Commits one transaction; returns the wall time of the commit."""
        self.sql(f"UPDATE subscribers SET plan = CASE WHEN id % 2 = 0 THEN '{throttle}' "
                 f"ELSE '{block}' END")
        return time.time()

    def cold_kernel(self):
        self.in_ns(["nft", "delete", "table", "inet", "ctquota"], check=False)
        self.in_ns(["tc", "qdisc", "del", "dev", "ctqsub0", "clsact"], check=False)
        self.in_ns(["ip", "link", "del", "ctqshaper"], check=False)

    def kernel_counts(self):
        """(throttled, blocked) as read back from nftables and tc."""
        def elements(name):
            r = self.in_ns(["nft", "-j", "list", "map", "inet", "ctquota", name], check=False)
            if r.returncode != 0:
                return 0
            return sum(len(i["map"].get("elem", [])) for i in json.loads(r.stdout)["nftables"]
                       if "map" in i)
        leaves = sum(" rate 2Mbit ceil 2Mbit " in line for line in
                     self.in_ns(["tc", "class", "show", "dev", "ctqshaper"]).stdout.splitlines())
        throttled = elements("throttle_v4")
        if throttled != leaves:
            raise RuntimeError(f"{throttled} throttle map elements but {leaves} HTB leaves")
        return throttled, elements("blocked_v4")

    def log_lines(self):
        with open(self.log_path) as f:
            return f.read().splitlines()

    def wait_applied(self, after_line, total, timeout=300):
        """Waits until the daemon's applies after log line `after_line` changed
        `total` subscribers; the spdlog time of the last one (epoch s)."""
        found = {}

        def done():
            changed, last = 0, None
            for line in self.log_lines()[after_line:]:
                m = APPLIED.match(line)
                if m:
                    changed += int(m.group(3))
                    last = m.group(1)
            found["last"] = last
            return changed >= total or self.proc.poll() is not None
        try:
            wait_until(done, timeout, interval=0.1, what=f"{total} kernel changes")
        except TimeoutError as e:
            raise RuntimeError(f"{e}; ctquotad's log:\n" +
                               "\n".join(self.log_lines()[-25:])) from None
        if self.proc.poll() is not None:
            raise RuntimeError("ctquotad exited:\n" + "\n".join(self.log_lines()[-30:]))
        return datetime.datetime.fromisoformat(found["last"]).timestamp()


def one_run(world, n):
    world.cold_kernel()
    world.set_plans("bench-throttle", "bench-block")
    t0 = time.time()
    world.start_daemon()
    cold = world.wait_applied(0, 2 * n) - t0
    assert world.kernel_counts() == (n, n), world.kernel_counts()
    mark = len(world.log_lines())
    t1 = world.set_plans("bench-open", "bench-open")
    lift = world.wait_applied(mark, 2 * n) - t1
    assert world.kernel_counts() == (0, 0), world.kernel_counts()
    mark = len(world.log_lines())
    t2 = world.set_plans("bench-throttle", "bench-block")
    reapply = world.wait_applied(mark, 2 * n) - t2
    assert world.kernel_counts() == (n, n), world.kernel_counts()
    world.stop_daemon()
    return {"cold": cold, "lift": lift, "reapply": reapply}


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="build-rel/daemon/ctquotad")
    ap.add_argument("--per-kind", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args()
    if args.smoke:
        args.per_kind, args.runs = min(args.per_kind, 200), 1
    if os.geteuid() != 0:
        print("policy_bench.py needs root (a network namespace)", file=sys.stderr)
        return 1
    world = PolicyWorld(os.path.abspath(args.bin), args.per_kind)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda s, _f: (world.close(), sys.exit(128 + s)))
    try:
        world.build()  # first start mirrors the plan files into the database
        world.stop_daemon()
        runs = []
        for i in range(args.runs):
            runs.append(one_run(world, args.per_kind))
            print(f"run {i + 1}: cold start {runs[-1]['cold']:.2f} s, lift "
                  f"{runs[-1]['lift']:.2f} s, re-apply {runs[-1]['reapply']:.2f} s "
                  f"({2 * args.per_kind} subscribers)", flush=True)
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(json.dumps({"subscribers": 2 * args.per_kind, "runs": len(runs),
                          "median_s": {k: round(v, 3) for k, v in med.items()},
                          "loadavg": os.getloadavg()[0]}))
        return 0
    finally:
        world.close()


if __name__ == "__main__":
    sys.exit(main())
