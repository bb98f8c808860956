"""Runs ctquotad the way deploy/ctquotad.service does: not as root but as a
user of its own with capabilities only (ambient, so they survive exec; the
bounding set holds nothing else, no new privileges). Tests use a numeric
uid/gid with no passwd entry, so nothing on the machine changes.

    nonroot.argv(binary_argv, nofile=None) -> argv for lab.start / Popen
    nonroot.start_daemon(daemon, nofile=None)  (a daemon_harness.Daemon)

START_CAPS is CAP_NET_ADMIN alone: the suites using it do not shape with tc
(no subscriber_interface, so no cls_bpf classifier: CAP_BPF) and leave the
drop attribution in mode auto without CAP_PERFMON (it bills as counted and
says so). The unit gives both; a suite that needs them adds "bpf" /
"perfmon" here (one line) and relaxes the CapEff check below.
"""

import os
import subprocess

UID = GID = int(os.environ.get("CTQUOTA_TEST_UID", "64198"))
START_CAPS = ["net_admin"]


def argv(binary_argv, nofile=None):
    caps = ",".join("+" + c for c in START_CAPS)
    out = []
    if nofile:
        out += ["prlimit", f"--nofile={nofile}:{nofile}", "--"]
    out += ["setpriv", f"--reuid={UID}", f"--regid={GID}", "--clear-groups",
            f"--inh-caps=-all,{caps}", f"--ambient-caps=-all,{caps}",
            f"--bounding-set=-all,{caps}", "--no-new-privs", "--"]
    return out + list(binary_argv)


def give_files(path):
    """The daemon's own files (config, temp dir) become the daemon user's."""
    for root, dirs, files in os.walk(path):
        os.chown(root, UID, GID)
        for name in files:
            os.chown(os.path.join(root, name), UID, GID)


def start_daemon(daemon, nofile=None):
    """daemon_harness.Daemon.start, but unprivileged; waits for "ctquotad running"."""
    from lab import wait_for
    give_files(daemon.dir)
    daemon.log = open(daemon.log_path, "a")
    daemon.proc = daemon.lab.start(
        daemon.lab.gw, argv([daemon.binary, "--config", daemon.config], nofile),
        stdout=daemon.log, stderr=subprocess.STDOUT)
    wait_for(lambda: "ctquotad running" in daemon.read_log() or daemon.proc.poll() is not None,
             timeout=30, what="ctquotad to start unprivileged")
    if daemon.proc.poll() is not None:
        raise RuntimeError("ctquotad exited at start (unprivileged):\n" + daemon.read_log()[-3000:])
    status = open(f"/proc/{daemon.proc.pid}/status").read()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    uid = int(fields["Uid"].split()[0])
    eff = int(fields["CapEff"].strip(), 16)
    if uid != UID or eff != (1 << 12):  # CAP_NET_ADMIN = 12
        raise RuntimeError(f"ctquotad runs as uid {uid} with CapEff {eff:#x}, not {UID} / net_admin")
