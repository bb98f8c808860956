#!/usr/bin/env python3
"""Throwaway network namespaces for ctquota's end-to-end tests and demo
(python3 stdlib only).

    sub (subscribers) --veth-- gw (gateway: ctquotad, conntrack, NAT) --veth-- srv (servers)

* sub: N IPv4 subscriber addresses 100.64.1.1, 100.64.1.2, ... (100.64.0.0/16
  on-link; past 250 they continue in 100.64.2.x) and M IPv6 addresses
  2001:db8:0:k::1, k = 1..M, each in its own /64 (subscriber prefix
  2001:db8:0:k::/64); default routes via gw.
* gw: forwarding on; nft table `inet natgw`: SNAT of IPv4 to 198.18.0.1 and
  masquerade of IPv6 toward srv (the reply tuple differs from the original);
  conntrack accounting and timestamps on, short UDP/TCP-closing timeouts so
  DESTROY events come quickly. All sysctls are written in gw's namespace
  only and read back.
* srv: 198.18.0.2/24, 2001:db8:ffff::2/64; runs a UDP "reply with the size
  asked for" server (port 9000) and a paced TCP server (port 9100).

Every namespace is named ctq-<pid>-<n>-<role>. Everything is removed on
exit, on exceptions, on SIGTERM/SIGINT/SIGHUP (Topology is a context manager;
an atexit hook is the backstop): processes started through the topology are
ended by PID (SIGTERM, then SIGKILL), then any process still inside one of
its namespaces (necessarily started from here) is killed, then the
namespaces are deleted. The host's own namespace is never configured.

Module API (see selfcheck.py and demo.py for use; it lives in nsproc.py,
ctviews.py and pgutil.py and is re-exported here):
    Topology(n_v4=50, n_v6=5, ...)           context manager
      .sub .gw .srv                          namespace names
      .sub_v4 .sub_v6 .sub_v6_prefixes       subscriber addresses / prefixes
      .srv_v4 .srv_v6 .nat_v4 .nat_v6        server and gateway-NAT addresses
      .run_in(ns, argv, check=True, timeout=..)   -> CompletedProcess
      .start_in(ns, argv, name=..)           -> Proc (tracked, killed on cleanup)
      .sysctl(ns, key) / .conntrack(*args)   read a sysctl / run conntrack(8) in gw
    udp_traffic(topo, plan, ...)             -> ground truth dict (trafficgen.py)
    make_udp_plan(addresses, seed=..)        -> list of flows of assorted sizes
    CtWatcher(topo)                          DESTROY events of gw (ctnl.py)
    ct_dump(topo)                            live entries of gw (also expires dead ones)
    LongTcp(topo, src, ...)                  one paced, long-lived TCP connection
    ThrowawayPg(port=54329)                  PostgreSQL (deploy/pg-throwaway.sh) in a netns of
                                             its own; .url (unix socket), context manager
    psql(url, sql) / with_dbname(url, db)    query; the same URL for another database
    wait_until(predicate, timeout)           polling, the only way tests wait

Command line:
    topology.py up [--v4 N] [--v6 M]   create, print the names, wait for Ctrl-C
    topology.py sweep                  remove what runs killed by SIGKILL left behind
"""

import json
import os
import re
import shutil
import signal
import sys
import tempfile

# The module API stays importable from here (selfcheck.py, demo.py).
from ctviews import (CtWatcher, LongTcp, ct_dump, entry_key, flow_key,  # noqa: F401
                     ground_truth_keys, make_udp_plan, plan_totals, sum_counters, udp_traffic)
from nsproc import (CTNL, HERE, NAME_RE, PYTHON, ROOT, TRAFFIC, NetnsSet, Proc,  # noqa: F401
                    log, sh, wait_until)
from pgutil import ThrowawayPg, psql, with_dbname  # noqa: F401

SUB_GW_V4 = "100.64.0.1"
SUB_GW_LL6 = "fe80::1"
NAT_V4 = "198.18.0.1"
NAT_V6 = "2001:db8:ffff::1"
SRV_V4 = "198.18.0.2"
SRV_V6 = "2001:db8:ffff::2"
UDP_PORT = 9000
TCP_PORT = 9100

# gw's conntrack settings (its namespace only). Short timeouts: DESTROY soon.
GW_CONNTRACK_SYSCTLS = {
    "net.netfilter.nf_conntrack_acct": "1",
    "net.netfilter.nf_conntrack_timestamp": "1",
    "net.netfilter.nf_conntrack_events": "1",
    "net.netfilter.nf_conntrack_udp_timeout": "2",
    "net.netfilter.nf_conntrack_udp_timeout_stream": "3",
    "net.netfilter.nf_conntrack_tcp_timeout_fin_wait": "3",
    "net.netfilter.nf_conntrack_tcp_timeout_close_wait": "3",
    "net.netfilter.nf_conntrack_tcp_timeout_last_ack": "3",
    "net.netfilter.nf_conntrack_tcp_timeout_time_wait": "3",
    "net.netfilter.nf_conntrack_tcp_timeout_close": "2",
    "net.netfilter.nf_conntrack_icmp_timeout": "5",
    "net.netfilter.nf_conntrack_icmpv6_timeout": "5",
}

GW_NFT = """\
table inet natgw {
    chain forward {
        type filter hook forward priority filter; policy accept;
        ct state invalid counter comment "untracked or invalid: should stay 0"
        ct state established,related counter accept
        ct state new counter accept
    }
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "srv0" ip saddr 100.64.0.0/10 counter snat ip to 198.18.0.1
        oifname "srv0" ip6 saddr 2001:db8::/48 counter masquerade
    }
}
"""


def v4_address(i):
    """i-th subscriber IPv4 address, i >= 1: 100.64.1.1 ... 100.64.1.250, 100.64.2.1, ..."""
    hi, lo = divmod(i - 1, 250)
    return f"100.64.{1 + hi}.{1 + lo}"


class Topology(NetnsSet):
    def __init__(self, n_v4=50, n_v6=5, gw_sysctls=None, servers=True, keep_logs=None):
        super().__init__(keep_logs=keep_logs)
        if not 0 <= n_v4 <= 250 * 250 or not 0 <= n_v6 <= 0xFFFF:
            raise ValueError("n_v4 must be in 0..62500 and n_v6 in 0..65535")
        self.sub = f"{self.id}-sub"
        self.gw = f"{self.id}-gw"
        self.srv = f"{self.id}-srv"
        self.sub_v4 = [v4_address(i) for i in range(1, n_v4 + 1)]
        self.sub_v6 = [f"2001:db8:0:{k:x}::1" for k in range(1, n_v6 + 1)]
        self.sub_v6_prefixes = [f"2001:db8:0:{k:x}::/64" for k in range(1, n_v6 + 1)]
        self.srv_v4, self.srv_v6 = SRV_V4, SRV_V6
        self.nat_v4, self.nat_v6 = NAT_V4, NAT_V6
        self.udp_port, self.tcp_port = UDP_PORT, TCP_PORT
        self.gw_sysctls = dict(GW_CONNTRACK_SYSCTLS)
        self.gw_sysctls.update(gw_sysctls or {})
        self.servers = servers
        self.udp_server = self.tcp_server = None

    def subscriber_addresses(self):
        return self.sub_v4 + self.sub_v6

    def server_for(self, src):
        return self.srv_v6 if ":" in src else self.srv_v4

    def create(self):
        self._begin()
        try:
            self._build()
        except BaseException:
            self.destroy()
            raise
        return self

    def _build(self):
        for role in ("sub", "gw", "srv"):
            ns = self.add_netns(role)
            # Before any interface exists: no DAD (addresses usable at once),
            # no router solicitations (quiet links).
            self.set_sysctls(ns, {
                "net.ipv6.conf.all.accept_dad": "0",
                "net.ipv6.conf.default.accept_dad": "0",
                "net.ipv6.conf.default.router_solicitations": "0",
                "net.ipv6.conf.all.disable_ipv6": "0",
            })
        sh(["ip", "-n", self.sub, "link", "add", "eth0", "type", "veth",
            "peer", "name", "sub0", "netns", self.gw])
        sh(["ip", "-n", self.gw, "link", "add", "srv0", "type", "veth",
            "peer", "name", "eth0", "netns", self.srv])

        sub = ["link set lo up"]
        sub += [f"address add {a}/16 dev eth0" for a in self.sub_v4]
        sub += [f"address add {a}/64 dev eth0 nodad" for a in self.sub_v6]
        sub += ["link set eth0 up",
                f"route add default via {SUB_GW_V4} dev eth0",
                f"route add default via {SUB_GW_LL6} dev eth0"]
        self.ip_batch(self.sub, sub)

        self.ip_batch(self.gw, [
            "link set lo up",
            f"address add {SUB_GW_V4}/16 dev sub0",
            f"address add {SUB_GW_LL6}/64 dev sub0 nodad",
            f"address add {NAT_V4}/24 dev srv0",
            f"address add {NAT_V6}/64 dev srv0 nodad",
            "link set sub0 up",
            "link set srv0 up",
            "route add 2001:db8::/48 dev sub0",
        ])
        self.ip_batch(self.srv, [
            "link set lo up",
            f"address add {SRV_V4}/24 dev eth0",
            f"address add {SRV_V6}/64 dev eth0 nodad",
            "link set eth0 up",
            f"route add default via {NAT_V4} dev eth0",
            f"route add default via {NAT_V6} dev eth0",
        ])
        self.set_sysctls(self.gw, {"net.ipv4.ip_forward": "1",
                                   "net.ipv6.conf.all.forwarding": "1"})
        # A ruleset using ct makes conntrack exist in gw; only then do its
        # per-namespace sysctls apply (and read back).
        sh(["ip", "netns", "exec", self.gw, "nft", "-f", "-"], input=GW_NFT)
        self.set_sysctls(self.gw, self.gw_sysctls)

        for ns, dev in ((self.sub, "eth0"), (self.gw, "sub0"), (self.gw, "srv0"),
                        (self.srv, "eth0")):
            wait_until(lambda: self._oper_up(ns, dev), 10, what=f"{ns}/{dev} up")
        for ns in (self.sub, self.gw, self.srv):
            wait_until(lambda: not sh(["ip", "-n", ns, "-6", "address", "show",
                                       "tentative"]).stdout.strip(),
                       10, what=f"{ns}: no tentative IPv6 address")
        if self.servers:
            self.udp_server = self.start_in(
                self.srv, [PYTHON, TRAFFIC, "udp-server", "--port", str(self.udp_port)],
                name="udp-server")
            self.tcp_server = self.start_in(
                self.srv, [PYTHON, TRAFFIC, "tcp-server", "--port", str(self.tcp_port)],
                name="tcp-server")
            for p in (self.udp_server, self.tcp_server):
                p.wait_line(lambda x: isinstance(x, dict) and x.get("ready"), 15, "ready")

    def _oper_up(self, ns, dev):
        out = sh(["ip", "-n", ns, "-j", "link", "show", "dev", dev]).stdout
        return json.loads(out)[0].get("operstate") == "UP"

    def conntrack(self, *args, check=True):
        """Runs conntrack(8) in gw, e.g. topo.conntrack("-L", "-p", "tcp")."""
        return self.run_in(self.gw, ["conntrack"] + list(args), check=check)

    def __repr__(self):
        return f"<Topology {self.id}>"


# ------------------------------------------------------------ command line

def sweep():
    """Removes what runs killed with SIGKILL left behind (their creating pid
    is gone): throwaway PostgreSQL clusters, ctq-<pid>-<n>-<role>
    namespaces (killing what still runs in them) and work directories."""
    removed = 0
    tmp = tempfile.gettempdir()
    dirs = [os.path.join(tmp, d) for d in os.listdir(tmp) if re.match(r"^ctq-(\d+)-\d+-", d)
            and not os.path.exists(f"/proc/{d.split('-')[1]}")]
    for path in dirs:  # clusters first: a clean stop while their namespace exists
        if path.endswith("-pg"):
            sh([os.path.join(ROOT, "deploy", "pg-throwaway.sh"), "stop", path], check=False)
    names = [l.split()[0] for l in sh(["ip", "netns", "list"]).stdout.splitlines() if l.strip()]
    for name in names:
        m = NAME_RE.match(name)
        if not m or os.path.exists(f"/proc/{m.group(1)}"):
            continue
        NetnsSet._empty_netns(name)
        sh(["ip", "netns", "del", name], check=False)
        removed += 1
        log(f"removed stale namespace {name}")
    for path in dirs:
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        removed += 1
        log(f"removed stale {path}")
    return removed


def main(argv):
    if len(argv) >= 2 and argv[1] == "sweep":
        sweep()
        return 0
    if len(argv) >= 2 and argv[1] == "up":
        n4 = int(argv[argv.index("--v4") + 1]) if "--v4" in argv else 50
        n6 = int(argv[argv.index("--v6") + 1]) if "--v6" in argv else 5
        with Topology(n4, n6) as t:
            print(json.dumps({"sub": t.sub, "gw": t.gw, "srv": t.srv,
                              "sub_v4": [t.sub_v4[0], t.sub_v4[-1]] if t.sub_v4 else [],
                              "sub_v6": t.sub_v6}), flush=True)
            log("topology up; Ctrl-C removes it")
            try:
                signal.pause()
            except KeyboardInterrupt:
                pass
        return 0
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
