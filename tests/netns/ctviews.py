"""The tests' views of the gateway's conntrack (ctnl.py dumps and DESTROY
events) and the traffic that produces them: UDP plans with their ground
truth (trafficgen.py) and long paced TCP connections."""

import json
import os
import random
import signal
import subprocess
import time

from nsproc import CTNL, PYTHON, TRAFFIC


# ------------------------------------------------------------ conntrack views

def flow_key(proto, src, sport, dst, dport):
    return (int(proto), src, int(sport), dst, int(dport))


def entry_key(e):
    o = e["orig"]
    return flow_key(e["proto"], o["src"], o["sport"], o["dst"], o["dport"])


def ct_dump(topo):
    """The gw conntrack table now (list of ctnl.py entry dicts). Expired
    entries the dump walks over are destroyed by the kernel at once."""
    r = topo.run_in(topo.gw, [PYTHON, CTNL, "dump"])
    entries = []
    for line in r.stdout.splitlines():
        obj = json.loads(line)
        if obj.get("done"):
            if obj.get("interrupted"):
                raise RuntimeError("conntrack dump interrupted")
            return entries
        entries.append(obj)
    raise RuntimeError("conntrack dump: no end marker")


class CtWatcher:
    """Collects gw's conntrack DESTROY events through ctnl.py (64 MiB buffer).
    Start it before the traffic it must see."""

    def __init__(self, topo, kinds=("destroy",), rcvbuf=64 << 20):
        self.topo = topo
        argv = [PYTHON, CTNL, "events", "--rcvbuf", str(rcvbuf)]
        if "destroy" not in kinds:
            argv.append("--no-destroy")
        if "new" in kinds:
            argv.append("--new")
        if "update" in kinds:
            argv.append("--update")
        self.argv = argv
        self.proc = None

    def start(self):
        self.proc = self.topo.start_in(self.topo.gw, self.argv, name="ctnl-events")
        ready = self.proc.wait_line(lambda x: isinstance(x, dict) and x.get("ready"), 15,
                                    "ready")
        self.rcvbuf = ready["rcvbuf"]
        return self

    def stop(self):
        if self.proc is not None:
            self.proc.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def events(self, kind="destroy"):
        with self.proc._cond:
            return [x for x in self.proc.lines if isinstance(x, dict) and x.get("kind") == kind]

    @property
    def enobufs(self):
        with self.proc._cond:
            return sum(1 for x in self.proc.lines if isinstance(x, dict) and "enobufs" in x
                       and not x.get("end"))

    def by_key(self, kind="destroy"):
        """{flow key: [events]}; a tuple can have several entries over time."""
        out = {}
        for e in self.events(kind):
            out.setdefault(entry_key(e), []).append(e)
        return out

    def wait_destroyed(self, keys, timeout=60, kick_every=0.5):
        """Waits until every key has at least one DESTROY event and no live
        entry left. Dumps the table every kick_every s meanwhile, which makes
        the kernel destroy expired entries at once instead of at its next
        garbage-collection pass. Returns {key: [events]}."""
        keys = set(keys)
        deadline = time.monotonic() + timeout
        while True:
            live = {entry_key(e) for e in ct_dump(self.topo)}
            seen = self.by_key()
            missing = [k for k in keys if k not in seen or k in live]
            if not missing:
                return {k: seen[k] for k in keys}
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{len(missing)} of {len(keys)} flows not destroyed after "
                                   f"{timeout:g} s, e.g. {sorted(missing)[:3]}")
            time.sleep(kick_every)  # the kernel expires entries on its own clock


def sum_counters(events):
    return {
        "up_packets": sum(e["orig_packets"] for e in events),
        "up_bytes": sum(e["orig_bytes"] for e in events),
        "down_packets": sum(e["reply_packets"] for e in events),
        "down_bytes": sum(e["reply_bytes"] for e in events),
    }


# ------------------------------------------------------------ UDP traffic

def make_udp_plan(addresses, seed=1, flows=(2, 5), many_every=7, many_packets=(150, 300),
                  slow=0, slow_packets=30, slow_gap=0.2):
    """Assorted flows for each address: flows[0]..flows[1] flows, 1-20
    packets each with sizes in [8, 1400] (requests) and [4, 1400] (replies);
    every many_every-th address also gets one flow of many packets with
    per-packet sizes cycling through a list. `slow` more flows (on the first
    addresses) pause slow_gap s between packets, so they live for about
    slow_packets * slow_gap s and span periodic dumps; they come first in the
    plan so that they run alongside the rest."""
    rnd = random.Random(seed)
    plan = []
    slow_flows = [{"src": addresses[i % len(addresses)], "packets": slow_packets,
                   "req": [rnd.randint(8, 1400) for _ in range(3)],
                   "reply": [rnd.randint(4, 1400) for _ in range(4)], "gap": slow_gap}
                  for i in range(slow)]
    for i, src in enumerate(addresses):
        for _ in range(rnd.randint(*flows)):
            plan.append({"src": src, "packets": rnd.randint(1, 20),
                         "req": rnd.choice([8, 9, 64, 100, 512, 999, 1200, 1400,
                                            rnd.randint(8, 1400)]),
                         "reply": rnd.choice([4, 5, 60, 256, 1000, 1400,
                                              rnd.randint(4, 1400)])})
        if many_every and i % many_every == 0:
            plan.append({"src": src, "packets": rnd.randint(*many_packets),
                         "req": [rnd.randint(8, 1400) for _ in range(7)],
                         "reply": [rnd.randint(4, 1400) for _ in range(5)]})
    rnd.shuffle(plan)
    return slow_flows + plan


def plan_totals(plan):
    return sum(f["packets"] for f in plan), len(plan)


def udp_traffic(topo, plan, window=64, timeout=1.0, gap=0.0, run_timeout=None):
    """Runs trafficgen.py udp-client in sub for `plan`; returns its ground
    truth (see trafficgen.py). Raises if the client fails."""
    path = os.path.join(topo.workdir, f"plan-{time.monotonic_ns()}.json")
    with open(path, "w") as f:
        json.dump(plan, f)
    packets, _ = plan_totals(plan)
    if run_timeout is None:
        run_timeout = 60 + packets * 0.01
    p = topo.start_in(topo.sub, [PYTHON, TRAFFIC, "udp-client", "--plan", path,
                                 "--server4", topo.srv_v4, "--server6", topo.srv_v6,
                                 "--port", str(topo.udp_port), "--window", str(window),
                                 "--timeout", str(timeout), "--gap", str(gap)],
                      name="udp-client")
    try:
        rc = p.wait(run_timeout)
    except subprocess.TimeoutExpired:
        p.stop(signal.SIGKILL)
        raise TimeoutError(f"udp-client did not finish in {run_timeout:g} s; log: {p.tail()}")
    result = p.last(lambda x: isinstance(x, dict) and "flows" in x)
    if rc != 0 or result is None:
        raise RuntimeError(f"udp-client failed (rc={rc}); log: {p.tail()}")
    return result


def ground_truth_keys(truth):
    """{flow key: flow record} for a udp_traffic() result."""
    return {flow_key(17, f["src"], f["sport"], f["dst"], f["dport"]): f for f in truth["flows"]}


# ------------------------------------------------------------ long TCP

class LongTcp:
    """One long-lived, paced TCP connection from a subscriber address to srv.
    The kernel's counters for it are the reference: read them live with
    live_counters(), or finally from its DESTROY event through a CtWatcher
    started before start()."""

    def __init__(self, topo, src, up_rate=200_000, down_rate=50_000, duration=10.0,
                 chunk=4096):
        self.topo = topo
        self.src = src
        self.dst = topo.server_for(src)
        self.argv = [PYTHON, TRAFFIC, "tcp-client", "--src", src, "--dst", self.dst,
                     "--port", str(topo.tcp_port), "--up-rate", str(up_rate),
                     "--down-rate", str(down_rate), "--duration", str(duration),
                     "--chunk", str(chunk)]
        self.duration = duration
        self.proc = None
        self.key = None

    def start(self, timeout=15):
        self.proc = self.topo.start_in(self.topo.sub, self.argv, name="tcp-client")
        c = self.proc.wait_line(lambda x: isinstance(x, dict) and x.get("event") == "connected",
                                timeout, "connected")
        self.sport = c["sport"]
        self.key = flow_key(6, c["src"], c["sport"], c["dst"], c["dport"])
        return self

    def progress(self):
        """(payload bytes sent, payload bytes received) so far."""
        p = self.proc.last(lambda x: isinstance(x, dict) and x.get("event") in ("progress",
                                                                                 "done"))
        return (p["sent"], p["received"]) if p else (0, 0)

    def running(self):
        return self.proc.alive() and self.proc.last(
            lambda x: isinstance(x, dict) and x.get("event") == "done") is None

    def wait_done(self, timeout=None):
        timeout = self.duration + 30 if timeout is None else timeout
        d = self.proc.wait_line(lambda x: isinstance(x, dict) and x.get("event") == "done",
                                timeout, "done")
        self.proc.wait(10)
        return d

    def live_counters(self):
        """Counters of its live conntrack entry, or None if it is gone."""
        for e in ct_dump(self.topo):
            if entry_key(e) == self.key:
                return sum_counters([e])
        return None
