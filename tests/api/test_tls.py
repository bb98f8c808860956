#!/usr/bin/env python3
"""HTTPS for the REST API: a throwaway self-signed certificate made with
openssl, ctquotad started with [api] tls_cert/tls_key, then curl in the
daemon's namespace: https with the certificate as CA answers 200 (health and
an authenticated route, with the usual request log line and latency); plain
http on the same port gets no HTTP answer; https without the CA is refused
by the client. Config errors: only one of the two keys, an unreadable file,
and files that are no certificate/key all stop start-up with a message that
names the key.

Run as root with CTQUOTA_TEST_DB_URL and CTQUOTA_BIN set (CTest does both).
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from api_harness import API_PORT, check, run_in_world, sh  # noqa: E402


def make_cert(directory):
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    sh(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=ctquota-test",
        "-addext", "subjectAltName=IP:127.0.0.1"])
    return cert, key


def curl(world, *args):
    return sh(["ip", "netns", "exec", world.ns, "curl", "-sS", "--max-time", "5", "-o", "-",
               "-w", "\n%{http_code}"] + list(args), check=False)


def start_fails(world, extra):
    """ctquotad with the [api] section extended by `extra`: its exit code and message."""
    bad = os.path.join(world.dir, "bad.toml")
    with open(world.config) as f, open(bad, "w") as out:
        out.write(f.read() + extra)
    r = sh([world.binary, "--config", bad, "migrate"], check=False)
    return r.returncode, r.stderr.strip()


def run(world):
    cert, key = make_cert(world.dir)
    base = f"https://127.0.0.1:{API_PORT}"
    token = world.cli("token", "create", "--role", "billing").stdout.strip()

    world.stop()
    with open(world.config, "a") as f:  # [api] is the last section ApiWorld writes
        f.write(f'tls_cert = "{cert}"\ntls_key = "{key}"\n')
    world.start()
    check("REST API listening on 127.0.0.1:8460 (HTTPS)" in world.read_log(), "no HTTPS log line")

    r = curl(world, "--cacert", cert, base + "/healthz")
    body, _, code = r.stdout.rpartition("\n")
    check(r.returncode == 0 and code == "200" and json.loads(body) == {"status": "ok"},
          f"https /healthz: rc {r.returncode} {r.stdout!r} {r.stderr!r}")
    r = curl(world, "--cacert", cert, "-H", f"Authorization: Bearer {token}",
             base + "/api/v1/subscribers")
    check(r.stdout.endswith("\n200"), f"https authenticated GET: {r.stdout!r} {r.stderr!r}")
    print("https with the CA: 200")

    r = sh(["ip", "netns", "exec", world.ns, "curl", "-sS", "--max-time", "5", "-o", "/dev/null",
            "-D", "-", "--cacert", cert, "-H", f"Authorization: Bearer {token}",
            base + "/api/v1/subscribers"], check=False)
    headers = r.stdout.lower()
    check("cache-control: no-store" in headers and "x-content-type-options: nosniff" in headers,
          f"API response headers: {r.stdout!r}")
    print("API responses: Cache-Control: no-store, X-Content-Type-Options: nosniff")

    def handshake(version):
        # SECLEVEL=0 lets the client offer old versions: the server alone must refuse.
        return sh(["ip", "netns", "exec", world.ns, "openssl", "s_client", "-connect",
                   f"127.0.0.1:{API_PORT}", version, "-cipher", "DEFAULT@SECLEVEL=0",
                   "-CAfile", cert], check=False, input="", timeout=10)
    for old in ("-tls1", "-tls1_1"):
        r = handshake(old)
        check(r.returncode != 0, f"{old} handshake accepted: {r.stdout[-300:]!r}")
    r = handshake("-tls1_2")
    check(r.returncode == 0 and "Protocol  : TLSv1.2" in r.stdout,
          f"TLS 1.2 handshake: rc {r.returncode} {r.stdout[-300:]!r} {r.stderr[-300:]!r}")
    print("TLS 1.0 and 1.1 refused by the server, TLS 1.2 accepted")

    r = curl(world, f"http://127.0.0.1:{API_PORT}/healthz")
    check(r.returncode != 0 or not r.stdout.endswith("\n200"), f"plain http answered: {r.stdout!r}")
    print(f"plain http: no answer (curl exit {r.returncode}: {r.stderr.strip()[:80]})")
    r = curl(world, base + "/healthz")
    check(r.returncode == 60, f"https without the CA: curl exit {r.returncode} {r.stderr!r}")
    print("https without the CA: certificate refused by the client")
    log = world.read_log()
    check("http GET /healthz 200" in log and "ms (/healthz)" in log, "no request log line with latency")
    check(world.stop() == 0, "ctquotad did not stop cleanly")

    # Configuration errors, each naming the key.
    with open(world.config) as f:
        plain = "".join(line for line in f if not line.startswith("tls_"))
    with open(world.config, "w") as f:
        f.write(plain)
    junk = os.path.join(world.dir, "junk.pem")
    with open(junk, "w") as f:
        f.write("not a certificate\n")
    cases = [
        (f'tls_cert = "{cert}"\n', "api.tls_key: missing"),
        (f'tls_cert = "{cert}"\ntls_key = "{world.dir}/nosuch.pem"\n', "api.tls_key: cannot read"),
    ]
    for extra, expected in cases:
        rc, message = start_fails(world, extra)
        check(rc != 0 and expected in message, f"{extra!r}: rc {rc}, {message!r}")
    # Files that exist but hold no certificate: refused when the server starts.
    with open(world.config, "a") as f:
        f.write(f'tls_cert = "{junk}"\ntls_key = "{junk}"\n')
    r = sh(["ip", "netns", "exec", world.ns, world.binary, "--config", world.config], check=False,
           timeout=30)
    check(r.returncode != 0 and "api.tls_cert, api.tls_key: cannot use" in r.stderr,
          f"junk certificate: rc {r.returncode}, {r.stderr[-300:]!r}")
    print("config errors: missing key, unreadable file, junk PEM all refused")


if __name__ == "__main__":
    sys.exit(run_in_world("test_tls.py", run, log_lines=30))
