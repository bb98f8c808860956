"""pmacct as the peer of the end-to-end benchmark (issue 15): uacctd fed by
an nftables `log group` rule in the gateway's forward hook, per-host totals
(`aggregate: src_host, dst_host`) into PostgreSQL every 5 s, 64 packets
queued in the kernel per NFLOG message: the best-tuned packet-based setup.

It runs on the same lab, the same flowgen load and the same throwaway
PostgreSQL cluster as ctquotad (a database of its own), without ctquotad.
CPU is uacctd's whole process tree (core, plugin, the writers it forks per
refresh) plus the cluster's."""

import os
import signal
import subprocess
import tempfile

from lab import wait_for

GROUP = 5
TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def tree_cpu(root):
    """CPU-s of `root` and its live descendants, each with its reaped children."""
    parents = {}
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                parents[int(pid)] = int(_stat(pid)[1])
            except (FileNotFoundError, ProcessLookupError, IndexError):
                pass
    tree, frontier = {root}, [root]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parents.items() if pp == p and c not in tree]
        tree.update(kids)
        frontier.extend(kids)
    ticks = 0
    for pid in tree:
        try:
            f = _stat(pid)
            ticks += sum(int(x) for x in f[11:15])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return ticks / TICKS


class Pmacct:
    """uacctd in the lab's gateway, writing into database `db` of the cluster
    whose socket directory and port are `pg_host`/`pg_port`."""

    def __init__(self, lab, pg_host, pg_port, db="pmacct_bench"):
        self.lab, self.db = lab, db
        self.pg = (pg_host, pg_port)
        self.proc = None
        self.dir = tempfile.mkdtemp(prefix="ctq-pmacct-")

    def _psql(self, sql, db=None):
        out = subprocess.run(["psql", "-h", self.pg[0], "-p", str(self.pg[1]), "-U", "postgres",
                              "-d", db or self.db, "-At", "-v", "ON_ERROR_STOP=1", "-c", sql],
                             capture_output=True, text=True, check=True)
        return out.stdout

    def start(self):
        self._psql(f"DROP DATABASE IF EXISTS {self.db}", db="postgres")
        self._psql(f"CREATE DATABASE {self.db}", db="postgres")
        # pmacct's v1 table stripped to the primitives aggregated
        # (sql_optimize_clauses), keyed like its own schema keys them.
        self._psql("CREATE TABLE acct (ip_src inet NOT NULL, ip_dst inet NOT NULL, "
                   "packets bigint NOT NULL, bytes bigint NOT NULL, "
                   "stamp_inserted timestamp NOT NULL DEFAULT now(), stamp_updated timestamp, "
                   "PRIMARY KEY (ip_src, ip_dst))")
        self.lab.run(self.lab.gw, ["nft", "-f", "-"], input=(
            "table ip pmacct {\n  chain to_uacctd {\n    type filter hook forward priority 0;\n"
            f"    ip saddr 100.64.0.0/10 log group {GROUP} snaplen 64 queue-threshold 64\n"
            "  }\n}\n"))
        conf = os.path.join(self.dir, "uacctd.conf")
        with open(conf, "w") as f:
            f.write(f"""daemonize: false
uacctd_group: {GROUP}
uacctd_threshold: 64
uacctd_nl_size: 2097152
snaplen: 64
aggregate: src_host, dst_host
plugins: pgsql
sql_host: {self.pg[0]}
sql_port: {self.pg[1]}
sql_db: {self.db}
sql_user: postgres
sql_table: acct
sql_table_version: 1
sql_optimize_clauses: true
sql_refresh_time: 5
""")
        self.log = open(os.path.join(self.dir, "uacctd.log"), "w")
        self.proc = self.lab.start(self.lab.gw, ["uacctd", "-f", conf],
                                   stdout=self.log, stderr=subprocess.STDOUT)
        # Packets logged to a group nobody is bound to are not queued: wait
        # until uacctd is bound (the kernel lists bound groups per namespace).
        wait_for(self._bound, timeout=20, interval=0.1, what="uacctd bound to its NFLOG group")

    def _bound(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"uacctd exited: {self.read_log()[-2000:]}")
        table = self.lab.run(self.lab.gw, ["cat", "/proc/net/netfilter/nfnetlink_log"]).stdout
        return any(line.split()[0] == str(GROUP) for line in table.splitlines() if line.strip())

    def totals(self):
        """{source address: (bytes, packets)} as written to the database."""
        rows = self._psql("SELECT host(ip_src), sum(bytes), sum(packets) FROM acct GROUP BY 1")
        out = {}
        for line in rows.splitlines():
            addr, b, p = line.split("|")
            out[addr] = (int(b), int(p))
        return out

    def cpu(self):
        return tree_cpu(self.proc.pid) if self.proc else 0.0

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.lab.run(self.lab.gw, ["nft", "delete", "table", "ip", "pmacct"], check=False)

    def read_log(self):
        with open(os.path.join(self.dir, "uacctd.log")) as f:
            return f.read()
