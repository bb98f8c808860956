"""The lab the ctquotad end-to-end tests and benchmarks run in: the namespaces
of topology.py (subscribers -> masquerading gateway -> servers, conntrack
accounting and timestamps on, short timeouts), without its traffic servers,
plus the small process API those tests use:

    with Lab(n_v4=52, n_v6=5) as lab:
        lab.run(lab.gw, ["conntrack", "-C"])      -> CompletedProcess
        p = lab.start(lab.srv, argv)              -> Popen, killed by PID on close
        lab.conntrack_count()

Every gateway neighbour is resolved and the conntrack table emptied before a
test starts, so no first reply waits in a neighbour queue and no set-up
packet counts for anyone.
"""

import subprocess

from nsproc import sh, wait_until
from topology import NAT_V4, SRV_V4, SRV_V6, Topology

__all__ = ["Lab", "LabProcesses", "SRV_V4", "SRV_V6", "GW_SRV_V4", "sh", "wait_for", "ip_overhead"]

GW_SRV_V4 = NAT_V4
wait_for = wait_until


class LabProcesses:
    """Processes a lab starts in its namespaces (Popen), killed by PID on close."""

    def start(self, ns, argv, **kw):
        """Starts a process in `ns`; it is killed (by PID) when the lab closes."""
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        p = subprocess.Popen(["ip", "netns", "exec", ns] + list(argv), text=True, **kw)
        self.processes.append(p)
        return p

    def end_processes(self):
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

    def run(self, ns, argv, check=True, timeout=300, **kw):
        return self.run_in(ns, argv, check=check, timeout=timeout, **kw)


class Lab(LabProcesses, Topology):
    def __init__(self, n_v4=50, n_v6=5, gw_sysctls=None, warm_neighbours=True):
        super().__init__(n_v4, n_v6, gw_sysctls=gw_sysctls, servers=False)
        self.warm_neighbours = warm_neighbours
        self.processes = []

    def __enter__(self):
        self.create()
        try:
            self._settle()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        self.end_processes()
        self.destroy()

    def conntrack_count(self):
        out = self.run(self.gw, ["conntrack", "-C"]).stdout.strip()
        return int(out or 0)

    def conntrack_dumped(self):
        """Entries a dump of the gateway's table shows. A dump also ends the
        entries that expired (as the kernel's garbage collector would, whose
        interval grows up to 60 s on a machine with long-lived entries), so
        their DESTROYs go out now."""
        out = self.run(self.gw, ["conntrack", "-L"], check=False).stdout
        return len(out.splitlines())

    def _settle(self):
        addresses = self.sub_v4 + self.sub_v6 if self.warm_neighbours else self.sub_v4[:1]
        script = "".join(f"ping -q -c1 -W2 -I {a} {SRV_V6 if ':' in a else SRV_V4} >/dev/null || exit 1\n"
                         for a in addresses)
        self.run(self.sub, ["sh", "-e"], input=script)
        self.run(self.gw, ["conntrack", "-F"], check=False)


def ip_overhead(address):
    """IP + UDP header bytes for a datagram from `address`."""
    return 8 + (40 if ":" in address else 20)
