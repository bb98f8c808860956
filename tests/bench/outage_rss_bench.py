#!/usr/bin/env python3
"""Memory during a database outage: ctquotad's RSS while its database is
unreachable for OUTAGE seconds and new short flows keep coming (flowgen, 2
packets each, RATE flows/s from SUBSCRIBERS addresses), then exactness once it
is back. The README promises memory bounded by subscribers x hours, not by
flows; the journal on disk is bounded by its spills.

  CTQUOTA_TEST_DB_URL=... outage_rss_bench.py --bin build/ci/daemon/app/ctquotad \\
      --flowgen build/ci/tests/bench/flowgen [--peer-bin OLD_CTQUOTAD] [--smoke]

--peer-bin runs the same scenario with another build (no journal options), in
the same invocation, for a ratio against a peer. --poll 1s --retry-max 2s makes
every flow one that a dump saw and a failed flush attempt took. Prints one JSON line per run:
RSS (anon and file-backed) before the outage, its peak and its last value in
the outage, journal disk peak, and whether the totals came out exact.
"""

import argparse
import json
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "netns"))
from daemon_harness import Daemon  # noqa: E402
from lab import SRV_V4, Lab, wait_for  # noqa: E402

PAYLOAD = 64
IP_UDP = 28


def rss_kib(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
                fields[key] = int(value.split()[0])
    return fields


def dir_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except FileNotFoundError:
                pass
    return total


class Sampler(threading.Thread):
    """RSS (and the journal's size on disk) every `every` seconds, by phase."""

    def __init__(self, daemon, every):
        super().__init__(daemon=True)
        self.d, self.every = daemon, every
        self.phase = "warmup"
        self.samples = []
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            if self.d.proc is not None:
                s = rss_kib(self.d.proc.pid)
                s["journal_bytes"] = dir_bytes(self.d.journal_dir) if self.d.journal_dir else 0
                s["phase"], s["t"] = self.phase, time.monotonic()
                self.samples.append(s)
            self.stop.wait(self.every)

    def of(self, phase):
        return [s for s in self.samples if s["phase"] == phase]


def run(args, binary, journal):
    os.environ["CTQUOTA_BIN"] = binary
    flows = int(args.rate * (args.warmup + args.outage))
    with Lab(n_v4=args.subscribers, n_v6=1, warm_neighbours=False) as lab:
        lab.run(lab.srv, ["nft", "-f", "-"], input=(
            "table ip sink {\n  chain drop_input {\n    type filter hook input priority 0;\n"
            "    udp dport 1-65000 drop\n  }\n}\n"))
        daemon = Daemon(lab, poll=args.poll, flush="1s", journal=journal, fd_store=journal,
                        conntrack_extra='event_buffer_bytes = "128MiB"\n')
        daemon.write_config('event_buffer_bytes = "128MiB"\n',
                            accounting_extra=f'retry_max = "{args.retry_max}"\n')
        try:
            values = ",".join(f"('s{i}')" for i in range(args.subscribers))
            daemon.query(f"INSERT INTO subscribers (external_id) VALUES {values}")
            daemon.query("INSERT INTO subscriber_bindings (subscriber_id, prefix) "
                         "SELECT id, ('100.64.' || (1 + (substr(external_id, 2)::int / 250)) || '.' || "
                         "(1 + substr(external_id, 2)::int % 250) || '/32')::cidr FROM subscribers")
            daemon.start()
            sampler = Sampler(daemon, args.every)
            sampler.start()
            gen = lab.start(lab.sub, [args.flowgen, SRV_V4, str(flows), str(args.rate), "2",
                                      str(PAYLOAD)] + lab.sub_v4)
            time.sleep(args.warmup)  # pacing: the outage starts after the warm-up
            sampler.phase = "outage"
            daemon.set_database_reachable(False)
            report = json.loads(gen.communicate(timeout=args.outage * 3 + 600)[0])
            sampler.phase = "recovery"
            daemon.set_database_reachable(True)
            expected = {}
            for addr, (_, packets) in report["per_source"].items():
                if packets:
                    expected[f"s{lab.sub_v4.index(addr)}"] = {
                        "up_bytes": packets * (PAYLOAD + IP_UDP), "up_packets": packets,
                        "down_bytes": 0, "down_packets": 0}
            wait_for(lambda: lab.conntrack_count() == 0, timeout=300, interval=1,
                     what="the table to drain")
            last = {}

            def landed():
                nonlocal last
                last = daemon.totals()
                return last == expected

            try:
                wait_for(landed, timeout=180, interval=1, what="totals")
            except TimeoutError:
                pass
            sampler.stop.set()
            sampler.join()
            daemon.stop()
            outage = sampler.of("outage")
            before = sampler.of("warmup")[-1]
            result = {
                "binary": binary, "journal": journal, "subscribers": args.subscribers,
                "rate": args.rate, "send_rate": round(report["rate"]), "flows": report["flows"],
                "poll": args.poll, "retry_max": args.retry_max,
                "outage_s": args.outage, "exact": last == expected,
                "rss_kib_before": before["VmRSS"], "anon_kib_before": before["RssAnon"],
                "rss_kib_peak": max(s["VmRSS"] for s in outage),
                "anon_kib_peak": max(s["RssAnon"] for s in outage),
                "file_kib_peak": max(s["RssFile"] + s.get("RssShmem", 0) for s in outage),
                "rss_kib_end_of_outage": outage[-1]["VmRSS"],
                "anon_kib_by_minute": [s["RssAnon"] for s in outage][:: max(1, int(60 / args.every))],
                "journal_bytes_peak": max(s["journal_bytes"] for s in outage),
                "spills": daemon.read_log().count("spilled ("),
            }
            if last != expected:
                result["missing_packets"] = (sum(v["up_packets"] for v in expected.values())
                                             - sum(v["up_packets"] for v in last.values()))
            print(json.dumps(result), flush=True)
            return result
        finally:
            daemon.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--flowgen", required=True)
    ap.add_argument("--peer-bin", help="another build to run the same scenario with (no journal)")
    ap.add_argument("--smoke", action="store_true", help="10 s outage at 1k flows/s")
    ap.add_argument("--rate", type=float, default=5000)
    ap.add_argument("--outage", type=float, default=300)
    ap.add_argument("--warmup", type=float, default=20)
    ap.add_argument("--subscribers", type=int, default=1000)
    ap.add_argument("--every", type=float, default=5)
    ap.add_argument("--poll", default="10s", help="conntrack.poll_interval (1s: every flow dumped)")
    ap.add_argument("--retry-max", default="30s", help="accounting.retry_max (flush attempts)")
    args = ap.parse_args()
    if args.smoke:
        args.rate, args.outage, args.warmup, args.subscribers, args.every = 1000, 10, 3, 50, 1
    results = [run(args, args.bin, True)]
    if args.peer_bin:
        results.append(run(args, args.peer_bin, False))
    sys.exit(0 if all(r["exact"] for r in results) else 1)


if __name__ == "__main__":
    main()
