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

Module API (see selfcheck.py and test_accounting.py for use):
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

import atexit
import ctypes
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CTNL = os.path.join(HERE, "ctnl.py")
TRAFFIC = os.path.join(HERE, "trafficgen.py")
PYTHON = sys.executable or "python3"

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

NAME_RE = re.compile(r"^ctq-(\d+)-(\d+)-(sub|gw|srv|db)$")

_counter = 0
_counter_lock = threading.Lock()
_live = []  # objects with a destroy() method, most recent last
_hooks_installed = False

try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # pragma: no cover
    _prctl = None
PR_SET_PDEATHSIG = 1


def _next_id():
    global _counter
    with _counter_lock:
        _counter += 1
        return f"ctq-{os.getpid()}-{_counter}"


def log(msg):
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


def wait_until(predicate, timeout, interval=0.05, what="condition"):
    """Polls predicate() until it returns something truthy, which is returned."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def sh(argv, check=True, timeout=60, **kw):
    if "input" not in kw:
        kw["stdin"] = subprocess.DEVNULL
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({r.returncode}): "
                           f"{(r.stderr or r.stdout).strip()}")
    return r


# ------------------------------------------------------------ cleanup hooks

def _cleanup_all():
    while _live:
        obj = _live[-1]
        try:
            obj.destroy()
        except Exception as e:  # keep going: the rest must go too
            log(f"cleanup of {obj!r} failed: {e}")
        if _live and _live[-1] is obj:
            _live.pop()


def _on_signal(sig, _frame):
    # Unwind the main thread: finally blocks and context managers clean up;
    # atexit is the backstop.
    if sig == signal.SIGINT:
        raise KeyboardInterrupt
    raise SystemExit(128 + sig)


def _install_hooks():
    global _hooks_installed
    if _hooks_installed:
        return
    _hooks_installed = True
    atexit.register(_cleanup_all)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            if signal.getsignal(sig) in (signal.SIG_DFL, signal.default_int_handler):
                signal.signal(sig, _on_signal)


class _SignalsBlocked:
    """Cleanup must not be interrupted halfway by a second Ctrl-C."""
    SIGS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.old = signal.pthread_sigmask(signal.SIG_BLOCK, self.SIGS)
        else:
            self.old = None

    def __exit__(self, *exc):
        if self.old is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, self.old)


# ------------------------------------------------------------ processes

def _child_setup():
    os.setsid()  # Ctrl-C on the terminal reaches us only; we stop children in order
    if _prctl is not None:
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class Proc:
    """A process started in a namespace. stdout lines are collected (and
    parsed as JSON when they are JSON); stderr goes to a log file."""

    def __init__(self, name, argv, log_path, capture=True, env=None, cwd=None,
                 pdeathsig=True):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self._logf = open(log_path, "ab")
        self.lines = []
        self._cond = threading.Condition()
        self._eof = False
        self.popen = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if capture else self._logf, stderr=self._logf,
            env=env, cwd=cwd,
            preexec_fn=_child_setup if pdeathsig else os.setsid)
        self.pid = self.popen.pid
        if capture:
            self._reader = threading.Thread(target=self._read, daemon=True)
            self._reader.start()
        else:
            self._eof = True

    def _read(self):
        for raw in self.popen.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            try:
                item = json.loads(line)
            except ValueError:
                item = line
            with self._cond:
                self.lines.append(item)
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def wait_line(self, predicate, timeout, what=None):
        """Returns the first stdout item (JSON object or str) satisfying predicate."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for item in self.lines[seen:]:
                    if predicate(item):
                        return item
                seen = len(self.lines)
                if self._eof:
                    raise RuntimeError(f"{self.name} ended (rc={self.popen.poll()}) before "
                                       f"{what or 'the expected output'}; log: {self.tail()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{self.name}: no {what or 'expected output'} after "
                                       f"{timeout:g} s; log: {self.tail()}")
                self._cond.wait(left)

    def last(self, predicate):
        with self._cond:
            for item in reversed(self.lines):
                if predicate(item):
                    return item
        return None

    def wait_eof(self, timeout):
        with self._cond:
            if not self._cond.wait_for(lambda: self._eof, timeout):
                raise TimeoutError(f"{self.name} still running after {timeout:g} s")

    def alive(self):
        return self.popen.poll() is None

    def wait(self, timeout=None):
        rc = self.popen.wait(timeout)
        if self.popen.stdout is not None:
            self.wait_eof(5)
        return rc

    def send_signal(self, sig):
        if self.popen.poll() is None:
            os.kill(self.pid, sig)

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        """Sends sig, waits up to timeout, then SIGKILL. Returns the exit status."""
        if self.popen.poll() is None:
            try:
                os.kill(self.pid, sig)
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                log(f"{self.name} (pid {self.pid}) ignored signal {sig}; killing it")
                os.kill(self.pid, signal.SIGKILL)
                self.popen.wait(10)
            except ProcessLookupError:
                pass
        return self.popen.poll()

    def close(self):
        if self.popen.stdout is not None:
            self.popen.stdout.close()
        self._logf.close()

    def tail(self, n=15):
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode(errors="replace").splitlines()
            return "\n    ".join([""] + lines[-n:]) if lines else "(empty)"
        except OSError:
            return "(no log)"

    def __repr__(self):
        return f"<Proc {self.name} pid={self.pid}>"


# ------------------------------------------------------------ namespaces

class NetnsSet:
    """Namespaces and processes owned by this run; base of Topology."""

    def __init__(self, keep_logs=None):
        self.id = _next_id()
        self.namespaces = []
        self.procs = []
        self.workdir = None
        self.keep_logs = (os.environ.get("CTQ_KEEP_LOGS") == "1") if keep_logs is None else keep_logs
        self._destroyed = False

    def _begin(self):
        _install_hooks()
        self.workdir = tempfile.mkdtemp(prefix=f"{self.id}-")
        _live.append(self)

    def add_netns(self, role):
        name = f"{self.id}-{role}"
        if not NAME_RE.match(name):
            raise ValueError(name)
        sh(["ip", "netns", "add", name])
        self.namespaces.append(name)
        return name

    def run_in(self, ns, argv, check=True, timeout=60, **kw):
        return sh(["ip", "netns", "exec", ns] + list(argv), check=check, timeout=timeout, **kw)

    def start_in(self, ns, argv, name=None, capture=True, env=None, pdeathsig=True):
        """Starts argv inside ns; the process is ended on cleanup (by PID).
        With pdeathsig (default) it also dies if the creating thread dies,
        so call this from the main thread or a thread that outlives it."""
        name = name or os.path.basename(argv[0])
        log_path = os.path.join(self.workdir, f"{len(self.procs):02d}-{name}.log")
        p = Proc(name, ["ip", "netns", "exec", ns] + list(argv), log_path, capture=capture,
                 env=env, pdeathsig=pdeathsig)
        self.procs.append(p)
        return p

    def sysctl(self, ns, key):
        return self.run_in(ns, ["sysctl", "-n", key]).stdout.strip()

    def set_sysctls(self, ns, values, verify=True):
        args = [f"{k}={v}" for k, v in values.items()]
        self.run_in(ns, ["sysctl", "-q", "-w"] + args)
        if verify:
            for k, v in values.items():
                got = self.sysctl(ns, k)
                if got != str(v):
                    raise RuntimeError(f"{ns}: {k} reads back {got!r}, wanted {v!r}")

    def ip_batch(self, ns, lines):
        sh(["ip", "-n", ns, "-batch", "-"], input="\n".join(lines) + "\n")

    def destroy(self):
        if self._destroyed:
            return
        with _SignalsBlocked():
            for p in reversed(self.procs):
                try:
                    p.stop(signal.SIGTERM, timeout=5)
                except Exception as e:
                    log(f"stopping {p!r}: {e}")
            for ns in reversed(self.namespaces):
                self._empty_netns(ns)
                r = sh(["ip", "netns", "del", ns], check=False)
                if r.returncode != 0 and os.path.exists(f"/run/netns/{ns}"):
                    log(f"could not delete netns {ns}: {r.stderr.strip()}")
            for p in self.procs:
                p.close()
            if self.workdir and not self.keep_logs:
                shutil.rmtree(self.workdir, ignore_errors=True)
            elif self.workdir:
                log(f"logs kept in {self.workdir}")
            self._destroyed = True
            if self in _live:
                _live.remove(self)

    @staticmethod
    def _empty_netns(ns):
        """Kills what is still running inside one of our namespaces: only our
        own children can be there."""
        for _ in range(50):
            r = sh(["ip", "netns", "pids", ns], check=False)
            pids = [int(x) for x in r.stdout.split()] if r.returncode == 0 else []
            pids = [p for p in pids if p != os.getpid()]
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)  # the kernel reaps asynchronously; re-list
        log(f"processes still in {ns} after SIGKILL")

    def __enter__(self):
        self.create()
        return self

    def __exit__(self, *exc):
        self.destroy()
        return False

    def create(self):  # overridden
        self._begin()


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


# ------------------------------------------------------------ PostgreSQL

class ThrowawayPg(NetnsSet):
    """deploy/pg-throwaway.sh in a namespace of its own (its TCP listener on
    127.0.0.1 stays off the host's network); clients use the unix socket,
    which works from every namespace. .url is the libpq URL."""

    def __init__(self, port=54329, keep_logs=None):
        super().__init__(keep_logs=keep_logs)
        self.port = port
        self.url = None
        self.dir = None
        self.script = os.path.join(ROOT, "deploy", "pg-throwaway.sh")

    def create(self):
        self._begin()
        try:
            ns = self.add_netns("db")
            sh(["ip", "-n", ns, "link", "set", "lo", "up"])
            # short: the socket path must fit in sun_path
            self.dir = os.path.join(tempfile.gettempdir(), f"{self.id}-pg")
            r = self.run_in(ns, [self.script, "start", self.dir, str(self.port)], timeout=120)
            self.url = r.stdout.strip().splitlines()[-1]
        except BaseException:
            self.destroy()
            raise
        return self

    def destroy(self):
        if self._destroyed:
            return
        with _SignalsBlocked():
            if self.dir and os.path.isdir(self.dir):
                # Stops the server; fails to remove DIR if a start was cut
                # short and initdb still writes into it...
                sh([self.script, "stop", self.dir], check=False, timeout=60)
            for ns in self.namespaces:
                self._empty_netns(ns)  # ...so end what runs in our namespace,
            if self.dir and os.path.isdir(self.dir):
                r = sh([self.script, "stop", self.dir], check=False, timeout=60)  # and retry
                if r.returncode != 0 and os.path.isdir(self.dir):
                    # A start cut short before (or a removal cut short after)
                    # its marker file: the path is ours alone and nothing runs
                    # from it any more (our namespace is empty).
                    shutil.rmtree(self.dir, ignore_errors=True)
            super().destroy()


def psql(url, sql, check=True, timeout=30):
    """Runs sql through psql; returns stdout (unaligned, tuples only, '|' separated)."""
    return sh(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", url, "-c", sql],
              check=check, timeout=timeout).stdout


def with_dbname(url, dbname):
    """The libpq URL with its database name replaced (postgresql:///DB?... form
    or postgresql://host/DB?...)."""
    head, sep, query = url.partition("?")
    scheme, rest = head.split("://", 1)
    authority = rest.split("/", 1)[0]
    return f"{scheme}://{authority}/{dbname}{sep}{query}"


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
