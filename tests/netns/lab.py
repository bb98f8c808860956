"""A throwaway three-namespace network: subscribers -> gateway -> servers.

The gateway masquerades toward the servers (so conntrack's reply tuple
differs from the original and NAT attribution is exercised), has conntrack
accounting and timestamps on, and short timeouts so DESTROY events come
quickly. Everything created here is removed on exit, on failure and on
SIGTERM/SIGINT; processes started through the lab are ended by PID.
"""

import atexit
import ipaddress
import os
import signal
import subprocess
import sys
import time
import uuid

SRV_V4 = "198.18.0.2"
SRV_V6 = "2001:db8:ffff::2"
GW_SRV_V4 = "198.18.0.1"


def sh(argv, check=True, **kw):
    r = subprocess.run(argv, check=False, text=True, capture_output=True, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({r.returncode}): {r.stderr.strip()}")
    return r


def wait_for(predicate, timeout, interval=0.1, what="condition"):
    """Polls `predicate` until it returns a truthy value; raises on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Lab:
    def __init__(self, n_v4=50, n_v6=5, gw_sysctls=None, warm_neighbours=True):
        tag = f"ctq{os.getpid() % 100000}{uuid.uuid4().hex[:4]}"
        self.sub, self.gw, self.srv = f"{tag}-sub", f"{tag}-gw", f"{tag}-srv"
        self.sub_v4 = [f"100.64.{1 + i // 250}.{1 + i % 250}" for i in range(n_v4)]
        self.sub_v6 = [f"2001:db8:0:{k:x}::1" for k in range(1, n_v6 + 1)]
        self.gw_sysctls = gw_sysctls or {}
        self.warm_neighbours = warm_neighbours
        self.processes = []
        self._created = []

    # -- lifecycle -----------------------------------------------------------
    def __enter__(self):
        atexit.register(self.close)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def _on_signal(self, signum, _frame):
        self.close()
        sys.exit(128 + signum)

    def close(self):
        for p in self.processes:
            if p.poll() is None:
                p.kill()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
            for stream in (p.stdout, p.stderr):
                if stream is not None:
                    stream.close()
        self.processes = []
        for ns in reversed(self._created):
            sh(["ip", "netns", "del", ns], check=False)
        self._created = []

    # -- running things ------------------------------------------------------
    def run(self, ns, argv, check=True, **kw):
        return sh(["ip", "netns", "exec", ns] + list(argv), check=check, **kw)

    def start(self, ns, argv, **kw):
        """Starts a process in `ns`; it is killed (by PID) when the lab closes."""
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        p = subprocess.Popen(["ip", "netns", "exec", ns] + list(argv), text=True, **kw)
        self.processes.append(p)
        return p

    def conntrack_count(self):
        out = self.run(self.gw, ["conntrack", "-C"]).stdout.strip()
        return int(out or 0)

    # -- topology ------------------------------------------------------------
    def _build(self):
        for ns in (self.sub, self.gw, self.srv):
            sh(["ip", "netns", "add", ns])
            self._created.append(ns)
            self.run(ns, ["ip", "link", "set", "lo", "up"])
            # No duplicate address detection: a tentative link-local address
            # delays neighbour discovery by a second and drops early replies.
            self.run(ns, ["sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0",
                          "net.ipv6.conf.default.accept_dad=0"])
        sh(["ip", "link", "add", "s0", "netns", self.sub, "type", "veth", "peer", "name", "g0",
            "netns", self.gw])
        sh(["ip", "link", "add", "g1", "netns", self.gw, "type", "veth", "peer", "name", "v0",
            "netns", self.srv])
        batch = {self.sub: [], self.gw: [], self.srv: []}
        for a in self.sub_v4:
            batch[self.sub].append(f"address add {a}/16 dev s0")
        for k, a in enumerate(self.sub_v6, start=1):
            batch[self.sub].append(f"address add {a}/64 dev s0 nodad")
            batch[self.gw].append(f"address add 2001:db8:0:{k:x}::fffe/64 dev g0 nodad")
        batch[self.sub] += ["link set s0 up", "route add default via 100.64.0.1",
                            "route add default via 2001:db8:0:1::fffe"]
        batch[self.gw] += ["address add 100.64.0.1/16 dev g0", f"address add {GW_SRV_V4}/24 dev g1",
                           "address add 2001:db8:ffff::1/64 dev g1 nodad", "link set g0 up",
                           "link set g1 up"]
        batch[self.srv] += [f"address add {SRV_V4}/24 dev v0", f"address add {SRV_V6}/64 dev v0 nodad",
                            "link set v0 up"]
        for ns, cmds in batch.items():
            self.run(ns, ["ip", "-batch", "-"], input="\n".join(cmds) + "\n")
        self.run(self.gw, ["sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"])
        ruleset = (
            "table inet ctqlab {\n"
            "  chain post {\n"
            "    type nat hook postrouting priority 100;\n"
            '    oifname "g1" masquerade\n'
            "  }\n"
            "}\n"
        )
        self.run(self.gw, ["nft", "-f", "-"], input=ruleset)
        # Conntrack now exists in gw; its sysctls are per namespace.
        settings = {
            "net.netfilter.nf_conntrack_acct": "1",
            "net.netfilter.nf_conntrack_timestamp": "1",
            "net.netfilter.nf_conntrack_udp_timeout": "2",
            "net.netfilter.nf_conntrack_udp_timeout_stream": "3",
            "net.netfilter.nf_conntrack_tcp_timeout_time_wait": "3",
            "net.netfilter.nf_conntrack_tcp_timeout_close_wait": "3",
            "net.netfilter.nf_conntrack_tcp_timeout_fin_wait": "3",
            "net.netfilter.nf_conntrack_tcp_timeout_last_ack": "3",
        }
        settings.update(self.gw_sysctls)
        self.run(self.gw, ["sysctl", "-qw"] + [f"{k}={v}" for k, v in settings.items()])
        for k, v in settings.items():
            got = self.run(self.gw, ["sysctl", "-n", k]).stdout.strip()
            if got != v:
                raise RuntimeError(f"{k} is {got} in {self.gw}, wanted {v}")
        # Resolve the gateway's neighbours for every source address now, so no
        # first reply waits in (or falls out of) a neighbour queue during a test.
        addresses = self.sub_v4 + self.sub_v6 if self.warm_neighbours else self.sub_v4[:1]
        script = "".join(f"ping -q -c1 -W2 -I {a} {SRV_V6 if ':' in a else SRV_V4} >/dev/null || exit 1\n"
                         for a in addresses)
        self.run(self.sub, ["sh", "-e"], input=script)
        # Those pings must not count for anyone: start from an empty table.
        self.run(self.gw, ["conntrack", "-F"], check=False)


def ip_overhead(address):
    """IP + UDP header bytes for a datagram from `address`."""
    return 8 + (20 if ipaddress.ip_address(address).version == 4 else 40)
