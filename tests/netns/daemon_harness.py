"""Runs ctquotad for tests: a fresh database, a config file, the CLI, the
daemon inside the lab's gateway namespace, and reads of the totals. By
default the daemon has an event journal and runs under a service manager's
fd store (fdstore.py), as deploy/ctquotad.service runs it."""

import json
import os
import shutil
import subprocess
import tempfile
import uuid

from fdstore import FdStore
from lab import sh, wait_for


def build_url(base_url, dbname):
    """The same libpq URL with another database name (netloc may be empty)."""
    head, sep, query = base_url.partition("?")
    return head.rsplit("/", 1)[0] + "/" + dbname + sep + query


class Daemon:
    def __init__(self, lab, poll="1s", flush="250ms", extra_config="", conntrack_extra="",
                 journal=True, fd_store=True, db_url=None, gateway_id="gw-test", share_db_of=None,
                 url_extra=""):
        """share_db_of: another Daemon whose database this one writes too (a
        second gateway; that one creates and drops it). url_extra: appended to
        the libpq URL (e.g. "&application_name=gw2")."""
        self.lab = lab
        self.binary = os.environ.get("CTQUOTA_BIN", "build/ci/daemon/ctquotad")
        base = db_url or os.environ.get("CTQUOTA_TEST_DB_URL")
        if not base:
            raise RuntimeError("CTQUOTA_TEST_DB_URL is not set: run the tests through tests/run.sh")
        self.owns_db = share_db_of is None
        self.dbname = "t_" + uuid.uuid4().hex[:12] if self.owns_db else share_db_of.dbname
        if self.owns_db:
            sh(["psql", base, "-qc", f'CREATE DATABASE "{self.dbname}"'])
        self.base_url = base
        self.url = build_url(base, self.dbname)
        self.gateway_id = gateway_id
        self.url_extra = url_extra
        self.dir = tempfile.mkdtemp(prefix="ctquotad-test-")
        self.config = os.path.join(self.dir, "ctquotad.toml")
        self.log_path = os.path.join(self.dir, "ctquotad.log")
        self.journal_dir = os.path.join(self.dir, "journal") if journal else None
        self.poll, self.flush = poll, flush
        self.write_config(conntrack_extra, extra_config)
        self.fd_store = FdStore(self.dir) if fd_store else None
        self.proc = None
        self.cli("migrate")

    def write_config(self, conntrack_extra="", extra_config="", database_url=None,
                     accounting_extra="", journal_extra=""):
        """(Re)writes the config; a running daemon reads it at its next start."""
        conntrack = conntrack_extra or 'event_buffer_bytes = "64MiB"\n'
        journal = f'[journal]\ndir = "{self.journal_dir}"\n{journal_extra}' if self.journal_dir else ""
        with open(self.config, "w") as f:
            f.write(
                f'[database]\nurl = "{database_url or self.url}{self.url_extra}"\n'
                f'[conntrack]\npoll_interval = "{self.poll}"\n{conntrack}'
                f'[accounting]\nflush_interval = "{self.flush}"\ngateway_id = "{self.gateway_id}"\n'
                f"{accounting_extra}{journal}{extra_config}"
            )

    def cli(self, *args):
        return sh([self.binary, "--config", self.config] + list(args))

    def add_subscriber(self, sub_id, *addresses):
        argv = ["subscriber", "add", sub_id]
        for a in addresses:
            argv += ["--address", a]
        self.cli(*argv)

    def start(self, wait=True):
        """Starts the daemon; with `wait`, returns once it runs (start-up waits
        for the database: without `wait`, call wait_running later)."""
        self.log = open(self.log_path, "a")
        offset = len(self.read_log())  # this run's lines only (the log is kept across restarts)
        argv, kw = [self.binary, "--config", self.config], {}
        if self.fd_store:
            argv, kw["env"], kw["pass_fds"] = self.fd_store.launch(argv)
        self.proc = self.lab.start(self.lab.gw, argv, stdout=self.log, stderr=subprocess.STDOUT, **kw)
        self.run_offset = offset
        if wait:
            self.wait_running()

    def wait_running(self, timeout=30):
        wait_for(lambda: "ctquotad running" in self.read_log()[self.run_offset:]
                 or self.proc.poll() is not None, timeout=timeout, what="ctquotad to start")
        if self.proc.poll() is not None:
            raise RuntimeError("ctquotad exited at start:\n" + self.read_log())

    def stop(self, sig="TERM"):
        if self.proc is None:
            return None
        if sig == "KILL":
            self.proc.kill()
        else:
            self.proc.terminate()
        rc = self.proc.wait(timeout=30)
        self.proc = None
        self.log.close()
        return rc

    def read_log(self):
        try:
            with open(self.log_path) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def query(self, sql):
        out = sh(["psql", self.url, "-AtF", "\t", "-c", sql]).stdout
        return [line.split("\t") for line in out.splitlines() if line]

    def totals(self):
        """{subscriber_id: {up_bytes, down_bytes, up_packets, down_packets}} from usage_current."""
        rows = self.query("SELECT subscriber_id, up_bytes, down_bytes, up_packets, down_packets "
                          "FROM usage_current")
        keys = ("up_bytes", "down_bytes", "up_packets", "down_packets")
        return {r[0]: dict(zip(keys, map(int, r[1:]))) for r in rows}

    def unattributed(self):
        r = self.query("SELECT coalesce(sum(up_bytes),0), coalesce(sum(down_bytes),0), "
                       "coalesce(sum(up_packets),0), coalesce(sum(down_packets),0) FROM usage_unattributed")
        return dict(zip(("up_bytes", "down_bytes", "up_packets", "down_packets"), map(int, r[0])))

    def usage(self, sub_id):
        return json.loads(self.cli("usage", sub_id).stdout)

    def metrics(self, port=8460):
        """{series: value} from /metrics of the daemon's API in the gateway namespace."""
        out = sh(["ip", "netns", "exec", self.lab.gw, "curl", "-s",
                  f"http://127.0.0.1:{port}/metrics"]).stdout
        values = {}
        for line in out.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                values[name] = float(value)
        return values

    def set_database_reachable(self, reachable):
        """Simulates a database outage for this daemon only: its database stops
        accepting connections (superusers included) and open ones are ended."""
        flag = "true" if reachable else "false"
        sh(["psql", self.base_url, "-qc", f'ALTER DATABASE "{self.dbname}" ALLOW_CONNECTIONS {flag}'])
        if not reachable:
            sh(["psql", self.base_url, "-qc",
                f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{self.dbname}'"])

    def close(self):
        if self.proc is not None:
            self.stop("KILL")
        if self.owns_db:
            sh(["psql", self.base_url, "-qc",
                f'ALTER DATABASE "{self.dbname}" ALLOW_CONNECTIONS true'], check=False)
            sh(["psql", self.base_url, "-qc",
                f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)'], check=False)
        if self.fd_store:
            self.fd_store.close()
        keep = os.environ.get("CTQ_KEEP_LOGS_DIR")  # debugging: the daemon's log outlives the test
        if keep and os.path.exists(self.log_path):
            os.makedirs(keep, exist_ok=True)
            shutil.copy(self.log_path, os.path.join(
                keep, f"{self.gateway_id}-{os.path.basename(self.dir)}.log"))
        sh(["rm", "-rf", self.dir], check=False)
