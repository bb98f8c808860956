#!/usr/bin/env python3
"""Flow log volume per subscriber per day for the demo's traffic mix: runs
tests/netns/demo.py (eight subscribers, long paced TCP connections and UDP
request/reply flows, two of them throttled or blocked within a minute) for
--duration seconds with [flowlog] on, into a database of its own, then
reports per subscriber the records written (final and interim), extrapolated
to a day, their size in the flow log at the bytes per record measured in a
large table (ROW_BYTES: heap + index of the 10.9M-record table of
nat_lookup_bench.py; a small table is mostly empty pages) and what the same
records take as IPFIX (biflow: 84 or 140 bytes a record, plus about 5 % of
message and set headers).

  CTQUOTA_TEST_DB_URL=$(deploy/pg-throwaway.sh start /tmp/pgb 54344) \\
    python3 tests/bench/flowlog_volume.py --bin build-rel/daemon/ctquotad [--duration 300]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "netns"))
from daemon_harness import build_url  # noqa: E402
from nsproc import sh  # noqa: E402

IPFIX_RECORD = {4: 84, 6: 140}  # biflow record bytes (natEvent on IPv4 finals: 84, else 83)
ROW_BYTES = 242  # flow_log heap + index per record, 2.46 GiB / 10.9M records (RESULTS.md)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="build-rel/daemon/ctquotad")
    ap.add_argument("--duration", type=int, default=300)
    ap.add_argument("--interim", default="5m", help="[records] interim_interval")
    args = ap.parse_args()
    base = os.environ.get("CTQUOTA_TEST_DB_URL")
    if not base:
        print("CTQUOTA_TEST_DB_URL is not set", file=sys.stderr)
        return 1
    dbname = "volume_" + uuid.uuid4().hex[:10]
    url = build_url(base, dbname)
    sh(["psql", base, "-qc", f'CREATE DATABASE "{dbname}"'])
    try:
        with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
            f.write(f'[records]\ninterim_interval = "{args.interim}"\n[flowlog]\nenabled = true\n')
        demo = os.path.join(HERE, "..", "netns", "demo.py")
        r = subprocess.run([sys.executable, demo, "--bin", os.path.abspath(args.bin), "--duration",
                            str(args.duration), "--pg-url", url, "--extra-config", f.name,
                            "--web-port", "18499", "--interval", "30"],
                           capture_output=True, text=True, timeout=args.duration + 300)
        os.unlink(f.name)
        if r.returncode != 0:
            print(r.stdout[-3000:], r.stderr[-3000:], file=sys.stderr)
            print(f"demo.py failed ({r.returncode})", file=sys.stderr)
            return 1
        rows = sh(["psql", url, "-XAtF", "\t", "-c", """
            SELECT coalesce(s.external_id, '(nobody)'), count(*) FILTER (WHERE final),
                   count(*) FILTER (WHERE NOT final), count(*) FILTER (WHERE family(orig_src) = 6)
              FROM flow_log f LEFT JOIN subscribers s ON s.id = f.subscriber_id
             GROUP BY 1 ORDER BY 1"""]).stdout.splitlines()
        scale = 86400 / args.duration
        print(f"demo traffic for {args.duration} s, [records] interim_interval = {args.interim}; "
              f"per subscriber per day (x {scale:.0f}):")
        print("| subscriber | records/day (final + interim) | flow log MB/day | IPFIX MB/day |")
        print("|---|---|---|---|")
        for line in rows:
            name, final, interim, v6 = line.split("\t")
            n = int(final) + int(interim)
            size = n * ROW_BYTES
            ipfix = (n - int(v6)) * IPFIX_RECORD[4] + int(v6) * IPFIX_RECORD[6]
            print(f"| {name} | {n * scale:,.0f} ({int(final) * scale:,.0f} + "
                  f"{int(interim) * scale:,.0f}) | {size * scale / 1e6:.2f} | "
                  f"{ipfix * 1.05 * scale / 1e6:.2f} |")
        return 0
    finally:
        sh(["psql", base, "-qc", f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)'], check=False)


if __name__ == "__main__":
    sys.exit(main())
