"""What the enforcement end-to-end tests share: a lab with a portal address,
a paced TCP download server, ctquotad with the shipped plans and enforcement
on the gateway's subscriber-facing interface, its REST API (through curl in
the gateway namespace) and measurements taken at the receivers."""

import json
import os
import threading
import time

from daemon_harness import Daemon
from lab import SRV_V4, Lab, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TRAFFIC = os.path.join(HERE, "trafficgen.py")
POLICIES = os.path.join(ROOT, "policies")
PORTAL_V4 = "198.18.0.53"
TCP_PORT = 9100
SHAPER = "ctqshaper"  # [enforce] shaper_interface (default)
API_PORT = 18460


class EnforcementLab:
    """Lab + daemon + API token. close() removes everything."""

    def __init__(self, n_v4=6, n_v6=2, extra_config="", offset_file=None, policies_dir=POLICIES,
                 policies_extra=""):
        self.offset_file = offset_file
        self.bindings = 0
        if offset_file:
            self.set_clock_offset(0)
            extra_config += f'[clock]\noffset_file = "{offset_file}"\n'
        self.lab = Lab(n_v4=n_v4, n_v6=n_v6).__enter__()
        try:
            self.lab.run(self.lab.srv, ["ip", "address", "add", f"{PORTAL_V4}/24", "dev", "eth0"])
            server = self.lab.start(self.lab.srv, ["python3", TRAFFIC, "tcp-server", "--port",
                                                   str(TCP_PORT)])
            if '"ready"' not in server.stdout.readline():
                raise RuntimeError("tcp-server did not start")
            self.daemon = Daemon(self.lab, poll="500ms", flush="200ms", extra_config=(
                f'[api]\nlisten = "127.0.0.1:{API_PORT}"\n'
                f'[policies]\ndir = "{policies_dir}"\n{policies_extra}'
                f'[enforce]\nsubscriber_interface = "sub0"\n{extra_config}'))
            self.token = self.daemon.cli("token", "create", "--role", "admin").stdout.strip()
            self.daemon.start()
        except BaseException:
            self.close()
            raise

    def close(self):
        if getattr(self, "daemon", None) is not None:
            self.daemon.close()
            self.daemon = None
        self.lab.close()

    # ----------------------------------------------------------------- API
    def api(self, method, path, body=None, headers=()):
        argv = ["curl", "-s", "-X", method, "-H", f"Authorization: Bearer {self.token}",
                "-w", "\n%{http_code}", f"http://127.0.0.1:{API_PORT}{path}"]
        for h in headers:
            argv += ["-H", h]
        if body is not None:
            argv += ["-H", "Content-Type: application/json", "--data-binary", json.dumps(body)]
        out = self.lab.run(self.lab.gw, argv).stdout
        text, _, code = out.rpartition("\n")
        return int(code), (json.loads(text) if text.strip() else None)

    def subscriber(self, sub_id):
        code, body = self.api("GET", f"/api/v1/subscribers/{sub_id}")
        assert code == 200, (code, body)
        return body

    def add_subscriber(self, sub_id, plan, addresses, quota=None):
        code, body = self.api("POST", "/api/v1/subscribers",
                              {"id": sub_id, "plan": plan, "addresses": addresses})
        assert code == 201, (code, body)
        self.bindings += len(addresses)
        # Traffic sent before the accounting knows the address would be nobody's.
        wait_for(lambda: self.metric("ctquota_subscriber_bindings") >= self.bindings, 10,
                 what=f"{self.bindings} bindings in the daemon's index")
        if quota is not None:
            code, body = self.api("PUT", f"/api/v1/subscribers/{sub_id}/quota",
                                  {"quota_bytes": quota})
            assert code in (200, 201), (code, body)
        return body

    def metric(self, name):
        argv = ["curl", "-s", f"http://127.0.0.1:{API_PORT}/metrics"]
        for line in self.lab.run(self.lab.gw, argv).stdout.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None

    def state(self, sub_id):
        return self.subscriber(sub_id)["state"]["state"]

    def wait_state(self, sub_id, state, timeout=10):
        return wait_for(lambda: self.state(sub_id) == state, timeout=timeout,
                        what=f"{sub_id} to be {state}")

    # ----------------------------------------------------------- traffic
    def download(self, src, rate, seconds, dst=SRV_V4):
        return Download(self.lab, src, dst, rate, seconds)

    def reachable(self, src, dst, port=TCP_PORT, timeout=1.0):
        """Can `src` open a new TCP connection to dst:port?"""
        script = ("import socket,sys\n"
                  f"f=socket.AF_INET6 if ':' in {dst!r} else socket.AF_INET\n"
                  "s=socket.socket(f,socket.SOCK_STREAM)\n"
                  f"s.settimeout({timeout})\n"
                  f"s.bind(({src!r},0))\n"
                  f"try:\n s.connect(({dst!r},{port}))\nexcept OSError:\n sys.exit(1)\n")
        return self.lab.run(self.lab.sub, ["python3", "-c", script], check=False).returncode == 0

    def ip_bytes_received(self, ns, dev="eth0"):
        """IP-layer bytes received on `dev` in `ns` (Ethernet headers taken off)."""
        link = json.loads(self.lab.run(ns, ["ip", "-s", "-j", "link", "show", "dev", dev]).stdout)
        rx = link[0]["stats64"]["rx"]
        return rx["bytes"] - 14 * rx["packets"]

    def count_address(self, address):
        """Counts, in the subscriber namespace, the IP bytes `address` sends and receives."""
        fam = "ip6" if ":" in address else "ip"
        self.lab.run(self.lab.sub, ["nft", "-f", "-"], input=(
            "table inet ctq_measure {\n"
            f" chain rx {{\n  type filter hook input priority 0;\n  {fam} daddr {address} counter\n }}\n"
            f" chain tx {{\n  type filter hook output priority 0;\n  {fam} saddr {address} counter\n }}\n"
            "}\n"))

    def counted(self):
        """(up, down) IP bytes seen by count_address's counters."""
        out = json.loads(self.lab.run(self.lab.sub, ["nft", "-j", "list", "table", "inet",
                                                     "ctq_measure"]).stdout)
        totals = {}
        for item in out["nftables"]:
            rule = item.get("rule")
            if rule:
                counter = next(e["counter"] for e in rule["expr"] if "counter" in e)
                totals[rule["chain"]] = counter["bytes"]
        return totals.get("tx", 0), totals.get("rx", 0)

    def passed_bytes(self):
        """Bytes that crossed the gateway so far, measured at the receivers."""
        return self.ip_bytes_received(self.lab.sub) + self.ip_bytes_received(self.lab.srv)

    # ------------------------------------------------------------- kernel
    def nft_ruleset(self):
        """The gateway's whole ruleset (ctquota's table and the lab's NAT) as JSON."""
        out = self.lab.run(self.lab.gw, ["nft", "-j", "list", "ruleset"], check=False)
        return json.loads(out.stdout) if out.returncode == 0 else None

    def tc_classes(self):
        """HTB classes on the shaper (throttled subscribers' downloads are
        redirected there from sub0), as tc prints them (this iproute2 has no
        JSON for classes)."""
        out = self.lab.run(self.lab.gw, ["tc", "class", "show", "dev", SHAPER], check=False).stdout
        return sorted(line.strip() for line in out.splitlines() if line.strip())

    def set_clock_offset(self, seconds):
        with open(self.offset_file, "w") as f:
            f.write(f"{seconds}\n")


class Download:
    """trafficgen's paced TCP download; (t, received) progress every 0.2 s."""

    def __init__(self, lab, src, dst, rate, seconds):
        self.samples = []
        self.proc = lab.start(lab.sub, ["python3", TRAFFIC, "tcp-client", "--src", src,
                                        "--dst", dst, "--port", str(TCP_PORT), "--up-rate", "0",
                                        "--down-rate", str(rate), "--duration", str(seconds)])
        self.started = time.monotonic()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if msg.get("event") == "progress":
                self.samples.append((msg["t"], msg["received"]))

    def received(self):
        return self.samples[-1][1] if self.samples else 0

    def time_reaching(self, nbytes):
        return next((t for t, r in self.samples if r >= nbytes), None)

    def rate_between(self, t1, t2):
        """Bytes/s between the samples nearest to t1 and t2."""
        a = min(self.samples, key=lambda s: abs(s[0] - t1))
        b = min(self.samples, key=lambda s: abs(s[0] - t2))
        return (b[1] - a[1]) / (b[0] - a[0])

    def stalled_for(self, seconds):
        """True once no byte arrived during the last `seconds`."""
        if not self.samples or self.samples[-1][0] < seconds:
            return False
        last = self.samples[-1]
        before = min(self.samples, key=lambda s: abs(s[0] - (last[0] - seconds)))
        return last[1] == before[1]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
