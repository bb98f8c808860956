"""Two gateways between one subscriber namespace and the servers, for the
multi-gateway tests (README "Several gateways"):

    sub --eth1-- gw1 --srv0-- srv1 (198.18.1.2)
        --eth2-- gw2 --srv0-- srv2 (198.18.2.2)

The subscriber addresses (100.64.1.1, 100.64.1.2, ...; with n_v6, one
address in each of the prefixes 2001:db8:1:1::/64, 2001:db8:1:2::/64, ...)
sit on the subscriber namespace's loopback; traffic to srv1 (198.18.1.2,
2001:db8:100:1::2) takes gw1, to srv2 gw2 (routes by destination), so one
subscriber's connections are split across both gateways. No NAT. Each gateway has conntrack with the accounting
sysctls of topology.py, its subscriber-facing interface is sub0 (as in the
single-gateway lab), and each server runs trafficgen's paced TCP server.

    with TwoGatewayLab(n_v4=2) as lab:
        lab.gws, lab.srvs, lab.server_of[gw]      names and addresses
        lab.sub_v6, lab.sub_v6_prefix, lab.server_v6_of[gw]
        lab.view(gw)                              what daemon_harness.Daemon needs (.gw, .start)
"""

from lab import LabProcesses
from nsproc import PYTHON, TRAFFIC, NetnsSet, sh, wait_until
from topology import GW_CONNTRACK_SYSCTLS, v4_address

TCP_PORT = 9100

GW_NFT = """\
table inet mglab {
    chain forward {
        type filter hook forward priority filter; policy accept;
        ct state established,related counter accept
        ct state new counter accept
    }
}
"""


class GatewayView:
    """One gateway of the lab as daemon_harness.Daemon sees a lab."""

    def __init__(self, lab, gw):
        self.gw = gw
        self.start = lab.start
        self.run = lab.run


class TwoGatewayLab(LabProcesses, NetnsSet):
    def __init__(self, n_v4=2, n_v6=0):
        super().__init__()
        self.sub_v4 = [v4_address(i) for i in range(1, n_v4 + 1)]
        self.sub_v6 = [f"2001:db8:1:{i:x}::1" for i in range(1, n_v6 + 1)]
        self.sub_v6_prefix = [f"2001:db8:1:{i:x}::/64" for i in range(1, n_v6 + 1)]
        self.processes = []

    def create(self):
        self._begin()
        try:
            self._build()
        except BaseException:
            self.destroy()
            raise
        return self

    def _build(self):
        self.sub = self.add_netns("sub")
        self.gws = [self.add_netns(f"gw{k}") for k in (1, 2)]
        self.srvs = [self.add_netns(f"srv{k}") for k in (1, 2)]
        self.server_of, self.server_v6_of = {}, {}
        sub = (["link set lo up"] + [f"address add {a}/32 dev lo" for a in self.sub_v4]
               + [f"address add {a}/128 dev lo nodad" for a in self.sub_v6])
        for k, (gw, srv) in enumerate(zip(self.gws, self.srvs), start=1):
            sh(["ip", "-n", self.sub, "link", "add", f"eth{k}", "type", "veth",
                "peer", "name", "sub0", "netns", gw])
            sh(["ip", "-n", gw, "link", "add", "srv0", "type", "veth",
                "peer", "name", "eth0", "netns", srv])
            link, server = f"100.127.{k}", f"198.18.{k}"
            sub += [f"address add {link}.2/30 dev eth{k}", f"link set eth{k} up",
                    f"route add {server}.0/24 via {link}.1 dev eth{k} src {self.sub_v4[0]}"]
            self.ip_batch(gw, [
                "link set lo up", f"address add {link}.1/30 dev sub0",
                f"address add {server}.1/24 dev srv0", "link set sub0 up", "link set srv0 up",
                f"route add 100.64.1.0/24 via {link}.2 dev sub0"])
            self.ip_batch(srv, [
                "link set lo up", f"address add {server}.2/24 dev eth0", "link set eth0 up",
                f"route add default via {server}.1 dev eth0"])
            self.server_of[gw] = f"{server}.2"
            self.set_sysctls(gw, {"net.ipv4.ip_forward": "1"})
            if self.sub_v6:
                sub += self._v6_links(k, gw, srv)
            sh(["ip", "netns", "exec", gw, "nft", "-f", "-"], input=GW_NFT)
            self.set_sysctls(gw, GW_CONNTRACK_SYSCTLS)
        self.ip_batch(self.sub, sub)
        for ns, dev in [(self.sub, "eth1"), (self.sub, "eth2")] + [(g, "sub0") for g in self.gws]:
            wait_until(lambda: "UP" in sh(["ip", "-n", ns, "-br", "link", "show", "dev",
                                           dev]).stdout, 10, what=f"{ns}/{dev} up")
        for srv in self.srvs:
            p = self.start(srv, [PYTHON, TRAFFIC, "tcp-server", "--port", str(TCP_PORT)])
            if '"ready"' not in p.stdout.readline():
                raise RuntimeError("tcp-server did not start")
        for src in self.sub_v4:  # neighbours resolved, nothing of this counted later
            for server in self.server_of.values():
                self.run(self.sub, ["ping", "-q", "-c1", "-W2", "-I", src, server])
        for src in self.sub_v6:
            for server in self.server_v6_of.values():
                wait_until(lambda: self.run(self.sub, ["ping", "-6", "-q", "-c1", "-W1", "-I",
                                                       src, server], check=False).returncode == 0,
                           10, what=f"{src} -> {server} over IPv6")
        for gw in self.gws:
            self.run(gw, ["conntrack", "-F"], check=False)

    def _v6_links(self, k, gw, srv):
        """gw<k>'s IPv6 links (no DAD: addresses usable at once); the subscriber side's commands."""
        link, server = f"2001:db8:ff:{k}::", f"2001:db8:100:{k}::"
        self.set_sysctls(gw, {"net.ipv6.conf.all.forwarding": "1"})
        self.ip_batch(gw, [f"address add {link}1/64 dev sub0 nodad",
                           f"address add {server}1/64 dev srv0 nodad",
                           f"route add 2001:db8:1::/48 via {link}2 dev sub0"])
        self.ip_batch(srv, [f"address add {server}2/64 dev eth0 nodad",
                            f"route add default via {server}1 dev eth0"])
        self.server_v6_of[gw] = f"{server}2"
        return [f"address add {link}2/64 dev eth{k} nodad",
                f"route add {server}/64 via {link}1 dev eth{k}"]

    def view(self, gw):
        return GatewayView(self, gw)

    def destroy(self):
        self.end_processes()
        super().destroy()
