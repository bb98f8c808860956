"""Flow records in the end-to-end benchmark (e2e_bench.py --records): both
sinks on, the PostgreSQL flow log and IPFIX into nfcapd (Debian's nfdump)
in the gateway namespace; then whether every flow made its record in each.

The exporter's own datagrams to the collector on the gateway's loopback are
left out of conntrack (notrack on lo): the benchmark counts the flows the
generator makes, and the table must drain to zero."""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "netns"))
from ipfix_tools import Nfcapd  # noqa: E402
from lab import wait_for  # noqa: E402

COLLECTOR_PORT = 4739
CONFIG = ('[flowlog]\nenabled = true\n'
          f'[ipfix]\ncollectors = ["127.0.0.1:{COLLECTOR_PORT}"]\n')
NOTRACK_LO = """table inet bench_raw {
  chain pre { type filter hook prerouting priority raw; iif "lo" notrack; }
  chain out { type filter hook output priority raw; oif "lo" notrack; }
}
"""


class Records:
    """Sets up the collector before the daemon starts; after the run, waits
    for the sinks to settle and reports what each wrote."""

    def __init__(self, lab):
        self.lab = lab
        lab.run(lab.gw, ["nft", "-f", "-"], input=NOTRACK_LO)
        self.nfcapd = Nfcapd(lab, lab.gw, COLLECTOR_PORT).start()

    def settle(self, daemon, flows, timeout=300):
        """Waits until every flow's final record is in the flow log (or was
        dropped) and both queues are empty; returns the final metrics."""
        def settled():
            m = daemon.metrics()
            made = m.get("ctquota_flow_records_final_total", 0) + m.get(
                "ctquota_flow_records_interim_total", 0)
            done = all(m.get(f'ctquota_sink_queue_records{{sink="{s}"}}', 1) == 0 and
                       m.get(f'ctquota_sink_records_written_total{{sink="{s}"}}', 0) +
                       m.get(f'ctquota_sink_records_dropped_total{{sink="{s}"}}', 0) >= made
                       for s in ("flowlog", "ipfix"))
            return m.get("ctquota_flow_records_final_total", 0) >= flows and done and m
        return wait_for(settled, timeout=timeout, interval=1, what="the sinks to settle")

    def result(self, daemon, m, flows, nfcapd_cpu):
        rows = int(daemon.query("SELECT count(*) FROM flow_log WHERE final AND "
                                "subscriber_id IS NOT NULL")[0][0])
        stats = self.nfcapd.stop()
        return {
            "final_records": int(m["ctquota_flow_records_final_total"]),
            "flowlog_final_rows": rows,
            "flowlog_dropped": int(m['ctquota_sink_records_dropped_total{sink="flowlog"}']),
            "ipfix_dropped": int(m['ctquota_sink_records_dropped_total{sink="ipfix"}']),
            "ipfix_send_errors": int(m["ctquota_ipfix_send_errors_total"]),
            "nfcapd_flows": stats["flows"] if stats else None,
            "nfcapd_sequence_errors": stats["sequence_errors"] if stats else None,
            "every_flow_logged": rows == flows,
            "every_flow_exported": bool(stats) and stats["flows"] >= flows and
            stats["sequence_errors"] == 0,
            "nfcapd_cpu_s_per_100k": round(nfcapd_cpu * 100_000 / flows, 3),
        }

