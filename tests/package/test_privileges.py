"""Least privilege: the shipped unit's exposure, and the daemon's sysctl
writes as a user of its own.

1. `systemd-analyze security --offline=true deploy/ctquotad.service` must
   rate the unit 2.0 or lower, and so must the unit without the drop
   attribution's four lines (CAP_PERFMON twice, perf_event_open, the bpffs
   pins); both figures are printed.
2. In a throwaway namespace with conntrack on and nf_conntrack_acct off,
   ctquotad as uid 64198 with only CAP_NET_ADMIN (setpriv, as nonroot.py)
   turns accounting on (the sysctl reads 1 afterwards);
3. the same without any capability fails at start with a message naming
   the sysctl, the errno and what is missing, and exits 1.
Needs root (namespaces, setpriv); ~5 s.
"""

import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "api"))
import nonroot  # noqa: E402
sys.path.insert(0, HERE)
from test_package import check, sh  # noqa: E402

UNIT = os.path.join(ROOT, "deploy", "ctquotad.service")
MAX_EXPOSURE = 2.0
ACCT = "/proc/sys/net/netfilter/nf_conntrack_acct"


def exposure(unit_path):
    r = sh(["systemd-analyze", "security", "--offline=true", "--no-pager", unit_path], check=False)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", r.stdout + r.stderr)
    check(m is not None, f"no exposure level in:\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
    return float(m.group(1))


DROP_LINES = ["AmbientCapabilities=CAP_PERFMON", "CapabilityBoundingSet=CAP_PERFMON",
              "SystemCallFilter=perf_event_open", "ReadWritePaths=-/sys/fs/bpf"]


def unit_exposures():
    """(the unit as shipped, the unit without the drop attribution's lines)"""
    with open(UNIT) as f:
        text = f.read()
    lines = text.splitlines()
    check(all(line in lines for line in DROP_LINES), "the unit lacks the drop attribution's lines")
    check("User=ctquota" in lines and "AmbientCapabilities=CAP_NET_ADMIN CAP_BPF" in lines and
          "CapabilityBoundingSet=CAP_NET_ADMIN CAP_BPF" in lines,
          "the unit does not run as ctquota with CAP_NET_ADMIN and CAP_BPF")
    with tempfile.TemporaryDirectory() as d:
        without = os.path.join(d, "ctquotad.service")
        with open(without, "w") as f:
            f.write("\n".join(line for line in lines if line not in DROP_LINES) + "\n")
        return exposure(UNIT), exposure(without)


def in_ns(ns, argv, **kw):
    return sh(["ip", "netns", "exec", ns] + argv, **kw)


def daemon_argv(binary, config, caps):
    if caps:
        return nonroot.argv([binary, "--config", config])
    return ["setpriv", f"--reuid={nonroot.UID}", f"--regid={nonroot.GID}", "--clear-groups",
            "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all", "--no-new-privs",
            "--", binary, "--config", config]


def sysctl_runs(binary):
    ns = f"ctq-{os.getpid()}-0-priv"
    d = tempfile.mkdtemp(prefix="ctquota-priv-")
    config = os.path.join(d, "ctquotad.toml")
    with open(config, "w") as f:
        # An unreachable database: start-up gets past the kernel checks and then waits.
        f.write('[database]\nurl = "postgresql:///none?host=/nonexistent"\n[api]\nenabled = false\n')
    nonroot.give_files(d)
    sh(["ip", "netns", "add", ns])
    try:
        in_ns(ns, ["nft", "-f", "-"], input="add table inet t\nadd chain inet t c "
              "{ type filter hook prerouting priority 0; }\nadd rule inet t c ct state new accept\n")
        in_ns(ns, ["sysctl", "-qw", "net.netfilter.nf_conntrack_acct=0"])
        # CAP_NET_ADMIN alone: the write works.
        log = os.path.join(d, "with-cap.log")
        with open(log, "w") as out:
            p = subprocess.Popen(["ip", "netns", "exec", ns] + daemon_argv(binary, config, True),
                                 stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and p.poll() is None:
                if "turned it on" in open(log).read():
                    break
                time.sleep(0.1)
            text = open(log).read()
        finally:
            p.kill()
            p.wait()
        check("nf_conntrack_acct was off; turned it on" in text, f"with CAP_NET_ADMIN:\n{text[-2000:]}")
        check(in_ns(ns, ["cat", ACCT]).stdout.strip() == "1", "nf_conntrack_acct is not 1")
        # No capability: a clear error, exit 1.
        in_ns(ns, ["sysctl", "-qw", "net.netfilter.nf_conntrack_acct=0"])
        r = in_ns(ns, daemon_argv(binary, config, False), check=False, timeout=30)
        said = r.stdout + r.stderr
        check(r.returncode == 1, f"without capabilities: exit {r.returncode}\n{said[-2000:]}")
        check(f"cannot write {ACCT}: Permission denied (needs CAP_NET_ADMIN" in said and
              "nf_conntrack_acct is off and could not be turned on" in said,
              f"without capabilities, unclear:\n{said[-2000:]}")
    finally:
        sh(["ip", "netns", "del", ns], check=False)
        sh(["rm", "-rf", d], check=False)


def main():
    if os.geteuid() != 0:
        print("test_privileges.py needs root (namespaces, setpriv)", file=sys.stderr)
        return 1
    shipped, without_drops = unit_exposures()
    print(f"systemd-analyze security --offline=true: {shipped} as shipped, {without_drops} "
          "without the drop attribution's lines")
    check(shipped <= MAX_EXPOSURE, f"unit exposure {shipped} > {MAX_EXPOSURE}")
    check(without_drops <= MAX_EXPOSURE, f"unit exposure without drops {without_drops} > {MAX_EXPOSURE}")
    sysctl_runs(os.environ.get("CTQUOTA_BIN", "build/ci/daemon/app/ctquotad"))
    print("test_privileges.py: PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
