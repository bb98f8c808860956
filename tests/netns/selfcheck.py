#!/usr/bin/env python3
"""Validates the netns test tooling against the kernel, independently of ctquotad:

  1. builds the topology (50 IPv4 + 5 IPv6 subscriber addresses, NAT gateway);
  2. sends UDP flows of known sizes from every address (trafficgen.py) and
     asserts that the gateway's conntrack DESTROY events (ctnl.py, 64 MiB
     buffer) carry exactly the ground truth for every flow: orig = up,
     reply = down, bytes and packets; the reply tuple shows the NAT;
  3. cross-checks ctnl.py's parsing against conntrack-tools
     (`conntrack -E -e DESTROY -o extended,id`) for every event both saw;
  4. runs long-lived paced TCP connections (IPv4 and IPv6): live counters grow
     during the transfer, a DESTROY arrives after the FIN exchange, and its
     counters cover exactly the payload plus plausible TCP/IP headers;
  5. tears everything down and checks that nothing is left (namespaces,
     processes) and that the host's own conntrack/forwarding sysctls did not
     change.

Run as root:  python3 tests/netns/selfcheck.py [--v4 N] [--v6 M] [--seed S] [--tcp-seconds S]
Exit status 0 when every check passed.
"""

import argparse
import os
import re
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import topology as T  # noqa: E402

HOST_SYSCTLS = [
    "net/netfilter/nf_conntrack_acct",
    "net/netfilter/nf_conntrack_timestamp",
    "net/netfilter/nf_conntrack_udp_timeout",
    "net/netfilter/nf_conntrack_udp_timeout_stream",
    "net/netfilter/nf_conntrack_tcp_timeout_time_wait",
    "net/ipv4/ip_forward",
    "net/ipv6/conf/all/forwarding",
]


def host_sysctls():
    out = {}
    for k in HOST_SYSCTLS:
        try:
            with open("/proc/sys/" + k) as f:
                out[k] = f.read().strip()
        except OSError:
            out[k] = None
    return out


class Checks:
    def __init__(self):
        self.failures = []
        self.passed = 0

    def check(self, ok, msg):
        if ok:
            self.passed += 1
        else:
            self.failures.append(msg)
            T.log("FAIL: " + msg)
        return ok


KV = re.compile(r"(\w[\w-]*)=(\S+)")


def parse_conntrack_tools(line):
    """A `conntrack -E -o extended,id` line -> (id, orig tuple key, counters) or None."""
    if "[DESTROY]" not in line:
        return None
    parts = line.split()
    try:
        proto = int(parts[4])
    except (IndexError, ValueError):
        return None
    seen = {}
    first, second = {}, {}
    ident = None
    for k, v in KV.findall(line):
        if k == "id":
            ident = int(v)
            continue
        target = first if k not in seen else second
        seen[k] = True
        target[k] = v
    try:
        key = T.flow_key(proto, first["src"], first["sport"], first["dst"], first["dport"])
        counters = {"up_packets": int(first["packets"]), "up_bytes": int(first["bytes"]),
                    "down_packets": int(second["packets"]), "down_bytes": int(second["bytes"])}
    except KeyError:
        return None
    return ident, key, counters


def udp_check(topo, checks, seed):
    plan = T.make_udp_plan(topo.subscriber_addresses(), seed=seed)
    packets, nflows = T.plan_totals(plan)
    T.log(f"UDP: {nflows} flows, {packets} request packets from "
          f"{len(topo.subscriber_addresses())} addresses")
    ref = topo.start_in(topo.gw, ["stdbuf", "-oL", "conntrack", "-E", "-e", "DESTROY",
                                  "-o", "extended,id"], name="conntrack-E")
    with T.CtWatcher(topo) as w:
        # conntrack -E has no ready signal: its subscription is in place once
        # it has printed something, so it only serves as a cross-check.
        t0 = time.monotonic()
        truth = T.udp_traffic(topo, plan)
        T.log(f"UDP: client done in {truth['elapsed']} s ({time.monotonic() - t0:.1f} s with "
              f"start-up); lost replies {truth['lost_replies']}, send errors "
              f"{truth['send_errors']}")
        checks.check(truth["lost_replies"] == 0, f"{truth['lost_replies']} UDP replies lost")
        checks.check(truth["send_errors"] == 0, f"{truth['send_errors']} UDP send errors")
        checks.check(sum(f["unexpected"] for f in truth["flows"]) == 0, "unexpected replies")
        checks.check(len(truth["flows"]) == nflows, "client reported a different number of flows")
        keys = T.ground_truth_keys(truth)
        checks.check(len(keys) == nflows, "two flows shared a 5-tuple (source port reused)")
        t1 = time.monotonic()
        events = w.wait_destroyed(keys.keys(), timeout=90)
        T.log(f"UDP: all {len(keys)} flows destroyed {time.monotonic() - t1:.1f} s after the "
              f"traffic; {len(w.events())} DESTROY events, ENOBUFS {w.enobufs}, socket buffer "
              f"{w.rcvbuf} bytes")
        checks.check(w.enobufs == 0, f"event reader hit ENOBUFS {w.enobufs} times")
        all_events = w.events()
    ref.stop()

    # Per flow: the kernel's counters are the ground truth, exactly.
    bad = 0
    split = 0
    for key, flow in keys.items():
        evs = events[key]
        if len(evs) > 1:
            split += 1
        got = T.sum_counters(evs)
        want = {k: flow[k] for k in ("up_packets", "up_bytes", "down_packets", "down_bytes")}
        if got != want:
            bad += 1
            if bad <= 5:
                T.log(f"  flow {key}: kernel {got} != ground truth {want}")
        for e in evs:
            nat = topo.nat_v6 if e["family"] == 6 else topo.nat_v4
            if e["reply"]["dst"] != nat or e["reply"]["src"] != key[3]:
                bad += 1
                T.log(f"  flow {key}: reply tuple {e['reply']} does not show the NAT")
            if e["start"] is None or e["stop"] is None:
                bad += 1
                T.log(f"  flow {key}: no timestamps (nf_conntrack_timestamp)")
    checks.check(bad == 0, f"{bad} UDP flows differ from the kernel's counters")
    T.log(f"UDP: per-flow counters equal the ground truth for {len(keys) - bad}/{len(keys)} "
          f"flows ({split} flows spanned more than one conntrack entry)")

    # Per subscriber address (what the daemon will be compared with).
    per_addr = {}
    for key in keys:
        s = per_addr.setdefault(key[1], {"up_packets": 0, "up_bytes": 0, "down_packets": 0,
                                         "down_bytes": 0})
        for k, v in T.sum_counters(events[key]).items():
            s[k] += v
    want_addr = {a: {k: v for k, v in s.items() if k != "flows"}
                 for a, s in truth["subscribers"].items()}
    checks.check(per_addr == want_addr, "per-address totals differ from the kernel's")
    tot = {k: sum(s[k] for s in per_addr.values()) for k in
           ("up_packets", "up_bytes", "down_packets", "down_bytes")}
    T.log(f"UDP: per-address totals equal for {len(per_addr)} addresses; total {tot}")

    ours = {e["id"]: e for e in all_events}
    extra = [e for e in all_events if T.entry_key(e) not in keys]
    checks.check(not extra, f"{len(extra)} DESTROY events for flows we did not make, "
                            f"e.g. {extra[:1]}")

    # ctnl.py against conntrack-tools, for every event both saw.
    compared = mismatched = 0
    for item in ref.lines:
        if not isinstance(item, str):
            continue
        parsed = parse_conntrack_tools(item)
        if parsed is None:
            continue
        ident, key, counters = parsed
        e = ours.get(ident)
        if e is None or T.entry_key(e) != key:
            continue
        compared += 1
        if T.sum_counters([e]) != counters:
            mismatched += 1
    checks.check(mismatched == 0, f"ctnl.py and conntrack-tools disagree on {mismatched} events")
    checks.check(compared > 0, "no event could be cross-checked with conntrack-tools")
    T.log(f"UDP: ctnl.py agrees with conntrack-tools on {compared} events "
          f"(conntrack -E printed {sum(1 for x in ref.lines if isinstance(x, str) and '[DESTROY]' in x)})")
    return tot


def tcp_check(topo, checks, seconds, src):
    with T.CtWatcher(topo) as w:
        c = T.LongTcp(topo, src, up_rate=200_000, down_rate=50_000, duration=seconds).start()
        T.log(f"TCP {src}: connected {c.key}")
        samples = []
        while c.running():
            live = c.live_counters()
            if live is not None:
                samples.append(live)
            time.sleep(0.5)  # sampling period, not synchronisation
        done = c.wait_done()
        events = w.wait_destroyed([c.key], timeout=60)[c.key]
    final = T.sum_counters(events)
    grows = all(b["up_bytes"] >= a["up_bytes"] and b["down_bytes"] >= a["down_bytes"]
                for a, b in zip(samples, samples[1:]))
    checks.check(len(samples) >= 3 and grows and samples[-1]["up_bytes"] > samples[0]["up_bytes"],
                 f"TCP {src}: live counters did not grow over the transfer: {samples}")
    checks.check(all(final[k] >= samples[-1][k] for k in final),
                 f"TCP {src}: final counters {final} below the last live sample {samples[-1]}")
    checks.check(len(events) == 1, f"TCP {src}: {len(events)} conntrack entries for one connection")
    # The kernel's bytes are the payload plus one IP + TCP header per counted
    # packet (20/40 + 20..60 bytes). Counted packets are skbs: over veth, TSO
    # and GRO make one counted packet out of several wire segments, so TCP
    # packet counts are not wire packets (UDP datagrams are unaffected).
    ip = 40 if ":" in src else 20
    up_hdr = (final["up_bytes"] - done["sent"]) / max(1, final["up_packets"])
    down_hdr = (final["down_bytes"] - done["received"]) / max(1, final["down_packets"])
    checks.check(ip + 20 <= up_hdr <= ip + 60 and ip + 20 <= down_hdr <= ip + 60,
                 f"TCP {src}: kernel bytes {final} minus payload ({done['sent']} up, "
                 f"{done['received']} down) leave {up_hdr:.2f} / {down_hdr:.2f} header bytes "
                 f"per packet, outside [{ip + 20}, {ip + 60}]")
    T.log(f"TCP {src}: {seconds:g} s, payload up {done['sent']} down {done['received']}; "
          f"{len(samples)} live samples growing={grows}; DESTROY counters {final}; header "
          f"bytes per counted packet up {up_hdr:.2f} down {down_hdr:.2f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--v4", type=int, default=50)
    ap.add_argument("--v6", type=int, default=5)
    ap.add_argument("--seed", type=int, default=int(os.environ.get("CTQ_SEED", "20261126")))
    ap.add_argument("--tcp-seconds", type=float, default=5.0)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("selfcheck needs root (network namespaces)", file=sys.stderr)
        return 2
    checks = Checks()
    before = host_sysctls()
    ids = []
    pids = []
    t0 = time.monotonic()
    try:
        with T.Topology(args.v4, args.v6) as topo:
            ids.append(topo.id)
            T.log(f"topology {topo.id}: {len(topo.sub_v4)} IPv4 + {len(topo.sub_v6)} IPv6 "
                  f"subscriber addresses, built in {time.monotonic() - t0:.1f} s")
            for k, v in topo.gw_sysctls.items():
                checks.check(topo.sysctl(topo.gw, k) == v, f"gw {k} is not {v}")
            udp_check(topo, checks, args.seed)
            tcp_check(topo, checks, args.tcp_seconds, topo.sub_v4[0])
            if topo.sub_v6:
                tcp_check(topo, checks, args.tcp_seconds, topo.sub_v6[0])
            pids = [p.pid for p in topo.procs]
    except Exception as e:
        checks.check(False, f"{type(e).__name__}: {e}")
    # Nothing left behind, host untouched.
    left = [n for n in T.sh(["ip", "netns", "list"]).stdout.split() if any(n.startswith(i + "-")
                                                                           for i in ids)]
    checks.check(not left, f"namespaces left behind: {left}")
    alive = [p for p in pids if os.path.exists(f"/proc/{p}")]
    checks.check(not alive, f"processes left behind: {alive}")
    after = host_sysctls()
    checks.check(before == after, f"host sysctls changed: {before} -> {after}")
    T.log(f"selfcheck: {checks.passed} checks passed, {len(checks.failures)} failed, "
          f"{time.monotonic() - t0:.1f} s")
    return 1 if checks.failures else 0


if __name__ == "__main__":
    sys.exit(main())
