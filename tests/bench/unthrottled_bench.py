#!/usr/bin/env python3
"""What ctquotad's kernel state costs a subscriber nobody throttles.

The enforcement lab (tests/enforce/enforce_traffic.py: subscribers -> gw,
whose sub0 redirects throttled downloads to the HTB shaper -> servers), sub0
with txqueuelen 0 as a VLAN interface has. One unthrottled subscriber
downloads as fast as the path goes for 4 s, in turn:
  none     no ctquotad table, no qdisc (the same gateway without ctquotad)
  ctquotad 1000 throttled neighbours (HTB classes with their leaves on the
           shaper, the redirect filter on sub0, nft maps, policers)
  nft_only the same neighbours without tc (no subscriber_interface: they are
           policed by nft both ways), to tell the two costs apart
Rates are the receiver's TCP payload from 1 s to 4 s; medians of --runs,
the conditions interleaved. Needs root and CTQUOTA_ENFORCE_DRIVER.
  python3 tests/bench/unthrottled_bench.py [--runs 5] [--neighbours 1000]
Results: tests/bench/RESULTS.md."""

import argparse
import json
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "enforce"))
from enforce_traffic import EnforceLab, enforce, rate_of, sub, transfer  # noqa: E402
from nsproc import log  # noqa: E402


def neighbours(n):
    """n throttled subscribers on addresses no traffic uses (100.65.x.y)."""
    return [sub(1000 + i, [f"100.65.{i // 250}.{i % 250 + 1}/32"], "throttled",
                down_bps=2_000_000 + 8 * i, up_bps=1_000_000) for i in range(n)]


def measure(lab, src):
    t = transfer(lab, src, down=1_000_000_000, duration=4)
    t.wait_done(timeout=30)
    return rate_of(t, "received", 1.0) * 8


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--neighbours", type=int, default=1000)
    args = p.parse_args()
    with EnforceLab() as lab:
        lab.run_in(lab.gw, ["ip", "link", "set", "sub0", "txqueuelen", "0"])
        src = lab.sub_v4[0]
        rates = {"none": [], "ctquotad": [], "nft_only": []}
        for run in range(args.runs):
            for cond in rates:
                enforce(lab, "teardown", subscriber_interface="")
                enforce(lab, "teardown")
                if cond == "nft_only":
                    enforce(lab, "teardown", subscriber_interface="")
                    enforce(lab, "reconcile", neighbours(args.neighbours), subscriber_interface="")
                elif cond != "none":
                    enforce(lab, "reconcile", neighbours(args.neighbours))
                rates[cond].append(measure(lab, src))
                log(f"run {run} {cond}: {rates[cond][-1] / 1e6:.0f} Mbit/s")
        enforce(lab, "teardown", subscriber_interface="")
        enforce(lab, "teardown")
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(json.dumps({"runs": rates, "median_mbit": {k: round(v / 1e6, 1) for k, v in med.items()},
                      "ratio_ctquotad_to_none": round(med["ctquotad"] / med["none"], 3),
                      "ratio_nft_only_to_none": round(med["nft_only"] / med["none"], 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
