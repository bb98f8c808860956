"""The api suite's world: a fresh database, a throwaway network namespace with
conntrack active, ctquotad running in it, and an HTTP client.

Outside (as root): ApiWorld builds all of it and always removes it again,
on failure and on SIGTERM/SIGINT too; the daemon is ended by its PID. The
tests themselves run inside the namespace (ip netns exec), where the API
listens on 127.0.0.1; the database is reached through its unix socket,
which works from any namespace.
"""

import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import uuid

API_PORT = 8460


# Shared with the netns suites: one sh(), one polling wait, one URL rewrite.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "netns"))
from daemon_harness import build_url  # noqa: E402
from nsproc import sh  # noqa: E402
from nsproc import wait_until as wait_for  # noqa: E402


class ApiWorld:
    """Database + namespace + daemon, torn down by close() whatever happened."""

    def __init__(self):
        self.binary = os.environ.get("CTQUOTA_BIN", "build/ci/daemon/ctquotad")
        self.base_url = os.environ.get("CTQUOTA_TEST_DB_URL")
        if not self.base_url:
            raise RuntimeError("CTQUOTA_TEST_DB_URL is not set: run the tests through tests/run.sh "
                               "(or start deploy/pg-throwaway.sh and export its URL)")
        self.ns = f"ctqapi-{os.getpid()}"
        self.dbname = "api_" + uuid.uuid4().hex[:12]
        self.dir = tempfile.mkdtemp(prefix="ctquota-api-test-")
        self.config = os.path.join(self.dir, "ctquotad.toml")
        self.log_path = os.path.join(self.dir, "ctquotad.log")
        self.url = build_url(self.base_url, self.dbname)
        self.proc = None
        self.db_created = False
        self.ns_created = False

    def __enter__(self):
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

    def _build(self):
        sh(["psql", self.base_url, "-qc", f'CREATE DATABASE "{self.dbname}"'])
        self.db_created = True
        with open(self.config, "w") as f:
            f.write(f'[database]\nurl = "{self.url}"\n'
                    '[conntrack]\npoll_interval = "1s"\nevent_buffer_bytes = "16MiB"\n'
                    '[accounting]\nflush_interval = "250ms"\ngateway_id = "gw-api-test"\n'
                    '[subscribers]\npools = ["100.64.0.0/10", "2001:db8::/32"]\n'
                    # [api] last: test_tls.py appends its keys to it.
                    f'[api]\nlisten = "127.0.0.1:{API_PORT}"\nmax_body_bytes = "1MiB"\n'
                    'auth_failure_log_interval = "1s"\n')
        self.cli("migrate")
        sh(["ip", "netns", "add", self.ns])
        self.ns_created = True
        sh(["ip", "-n", self.ns, "link", "set", "lo", "up"])
        # A conntrack-using rule, so the namespace's conntrack is active.
        rules = ("add table inet t\n"
                 "add chain inet t c { type filter hook prerouting priority 0; }\n"
                 "add rule inet t c ct state new accept\n")
        sh(["ip", "netns", "exec", self.ns, "nft", "-f", "-"], input=rules)
        self.start()

    def cli(self, *args):
        return sh([self.binary, "--config", self.config] + list(args))

    def start(self):
        """Starts ctquotad and waits for this start's own "ctquotad running"
        (the log is appended to across restarts)."""
        seen = self.read_log().count("ctquotad running")
        self.log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, self.binary, "--config", self.config,
             "--log-level", "debug"], stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(lambda: self.read_log().count("ctquotad running") > seen
                 or self.proc.poll() is not None, timeout=30, what="ctquotad to start")
        if self.proc.poll() is not None:
            raise RuntimeError("ctquotad exited at start:\n" + self.read_log()[-3000:])

    def stop(self, timeout=20):
        """SIGTERM; returns the exit code (None if it had to be killed)."""
        if self.proc is None:
            return None
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            rc = None
        self.proc = None
        self.log.close()
        return rc

    def read_log(self):
        try:
            with open(self.log_path) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None
        if self.ns_created:
            sh(["ip", "netns", "del", self.ns], check=False)
            self.ns_created = False
        if self.db_created:
            sh(["psql", self.base_url, "-qc", f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)'],
               check=False)
            self.db_created = False
        sh(["rm", "-rf", self.dir], check=False)


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def run_in_world(name, run, log_lines=30):
    """main() of a test that drives one ApiWorld from the host: needs root;
    on failure the daemon's last log lines are printed before the traceback,
    on success "<name>: PASS"."""
    if os.geteuid() != 0:
        print(f"{name} needs root (a network namespace)", file=sys.stderr)
        return 1
    with ApiWorld() as world:
        try:
            run(world)
        except Exception:
            tail = "\n".join(world.read_log().splitlines()[-log_lines:])
            print(f"---- ctquotad log (last {log_lines} lines) ----\n{tail}")
            raise
    print(f"{name}: PASS")
    return 0


# -- inside the namespace ------------------------------------------------------

class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # {lower-case name: value}
        self.body = body

    def json(self):
        return json.loads(self.body)

    @property
    def content_type(self):
        return self.headers.get("content-type", "")

    def __repr__(self):
        return f"<{self.status} {self.content_type} {self.body[:300]!r}>"


class Client:
    """urllib for ordinary requests; http.client for what urllib cannot send."""

    def __init__(self, token=None, host="127.0.0.1", port=API_PORT):
        self.token = token
        self.base = f"http://{host}:{port}"
        self.host, self.port = host, port

    def _headers(self, headers, token):
        out = dict(headers or {})
        token = self.token if token is None else token
        if token:
            out.setdefault("Authorization", f"Bearer {token}")
        return out

    def request(self, method, path, body=None, headers=None, token=None, json_body=None):
        headers = self._headers(headers, token)
        if json_body is not None:
            body = json.dumps(json_body).encode()
            headers.setdefault("Content-Type", "application/json")
        if isinstance(body, str):
            body = body.encode()
        req = urllib.request.Request(self.base + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return Response(r.status, {k.lower(): v for k, v in r.headers.items()}, r.read())
        except urllib.error.HTTPError as e:
            return Response(e.code, {k.lower(): v for k, v in e.headers.items()}, e.read())

    def raw(self, method, path, body=None, headers=None, token=None, chunked=False):
        """Sends exactly what it is given (any bytes in the path, chunked bodies)."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            conn.putrequest(method, path, skip_accept_encoding=True)
            for name, value in self._headers(headers, token).items():
                conn.putheader(name, value)
            if chunked:
                conn.putheader("Transfer-Encoding", "chunked")
            elif body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders()
            if chunked:
                for i in range(0, len(body), 65536):
                    part = body[i:i + 65536]
                    conn.send(f"{len(part):x}\r\n".encode() + part + b"\r\n")
                conn.send(b"0\r\n\r\n")
            elif body:
                conn.send(body)
            r = conn.getresponse()
            return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        finally:
            conn.close()

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, json_body=None, **kw):
        return self.request("POST", path, json_body=json_body, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)


class Db:
    """psql on the test database, for setting up and checking state."""

    def __init__(self, url):
        self.url = url

    def query(self, sql):
        out = sh(["psql", self.url, "-XAtF", "\t", "-v", "ON_ERROR_STOP=1", "-c", sql]).stdout
        return [line.split("\t") for line in out.splitlines() if line]

    def exec(self, sql):
        sh(["psql", self.url, "-Xq", "-v", "ON_ERROR_STOP=1", "-c", sql])

    def fingerprint(self):
        """A digest of everything an API write could change."""
        return self.query(
            "SELECT (SELECT md5(coalesce(string_agg(s::text, '|' ORDER BY s.id), '')) FROM subscribers s),"
            " (SELECT md5(coalesce(string_agg(b::text, '|' ORDER BY b.id), '')) FROM subscriber_bindings b),"
            " (SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t.id), '')) FROM api_tokens t),"
            " (SELECT md5(coalesce(string_agg(p::text, '|' ORDER BY p.name), '')) FROM plans p),"
            " (SELECT md5(coalesce(string_agg(q::text, '|' ORDER BY q.subscriber_id, q.cycle_start), ''))"
            "  FROM quota_overrides q),"
            " (SELECT md5(coalesce(string_agg(u::text, '|' ORDER BY u.id), '')) FROM topups u)")[0]
