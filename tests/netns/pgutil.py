"""PostgreSQL for the netns tests: a throwaway cluster (deploy/pg-throwaway.sh)
in a namespace of its own, and psql helpers."""

import os
import shutil
import tempfile

from nsproc import ROOT, NetnsSet, _SignalsBlocked, sh


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
