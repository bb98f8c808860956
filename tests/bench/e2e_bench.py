#!/usr/bin/env python3
"""End-to-end benchmark: flowgen -> gateway namespace (conntrack) -> ctquotad
-> PostgreSQL. For each scenario: did every flow land exactly (zero loss),
how many CPU seconds did ctquotad and PostgreSQL spend per 100k flows, how
many bytes the event journal wrote (--journal-cost: each scenario without the
journal and with it, one after the other, for the difference). --peer pmacct
runs the same load through pmacct (tests/bench/pmacct_peer.py) after each
scenario, for a side-by-side figure from the same session; --baseline the
same load with no accounting at all. With --machine-window every run also
reports the whole machine's busy CPU over a window of that length from the
start of the load (machine_cpu_s_per_100k): the machine's figure less the
baseline's is what the accounting costs the gateway, including the kernel's
work on its behalf that no process is charged with.

  CTQUOTA_TEST_DB_URL=... e2e_bench.py --bin build-rel/daemon/ctquotad \
      --flowgen build-rel/tests/bench/flowgen [--quick]

Ground truth: flowgen reports what each source sent; a counter in the
gateway's forward chain proves nothing was dropped before conntrack saw it.
"""

import argparse
import json
import os
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "netns"))
from daemon_harness import Daemon  # noqa: E402
from lab import SRV_V4, Lab, wait_for  # noqa: E402
import flow_records_bench  # noqa: E402
from pmacct_peer import Pmacct  # noqa: E402

PAYLOAD = 64
IP_UDP = 28
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid, children=False):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / TICKS


def machine_cpu():
    """Busy CPU-seconds of the whole machine, all CPUs: user, system, irq and
    softirq time of every process and of the kernel's own threads (idle,
    iowait and time stolen by the hypervisor left out). What an accounting
    design costs the kernel on its behalf (building conntrack events, logging
    packets to NFLOG in softirq, conntrack's garbage collection in a kworker)
    shows here, wherever it is charged."""
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in f.readline().split()[1:8])
    return (user + nice + system + irq + softirq) / TICKS


def machine_over_window(args, started, cpu0, per100k):
    """The machine's busy CPU per 100k flows over a window of the same length
    for every run of a scenario (--machine-window), from the start of the
    load: the background the machine has anyway then weighs the same in each,
    and the baseline's subtracts it. Returns (figure, exceeded): (None, None)
    without a window; exceeded when the run outlasted the window, whose
    figure then covers the run's longer time and is not comparable."""
    if not args.machine_window:
        return None, None
    end = started + args.machine_window
    exceeded = time.monotonic() > end
    if not exceeded:
        time.sleep(end - time.monotonic())  # the window's length, not a synchronisation
    return round((machine_cpu() - cpu0) * per100k, 3), exceeded


def postgres_cpu(pg_dir):
    """CPU of the cluster: the postmaster (with reaped children) + live backends."""
    with open(os.path.join(pg_dir, "data", "postmaster.pid")) as f:
        master = int(f.readline())
    total = cpu_seconds(master, children=True)
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                if ppid == master:
                    total += cpu_seconds(int(pid))
            except (FileNotFoundError, ProcessLookupError):
                pass
    return total


def pg_dir_of(url):
    return url.split("host=")[1].split("&")[0]


def journal_bytes(lab):
    """ctquota_journal_bytes_total from the daemon's /metrics (0 without a journal)."""
    body = lab.run(lab.gw, ["curl", "-s", "--max-time", "5", "http://127.0.0.1:8460/metrics"],
                   check=False).stdout
    m = re.search(r"^ctquota_journal_bytes_total (\d+)$", body, re.M)
    return int(m.group(1)) if m else 0


def bench_lab(subscribers):
    """The lab with the server's sink and the gateway's ground-truth counter."""
    lab = Lab(n_v4=subscribers, n_v6=1, warm_neighbours=False,
              gw_sysctls={"net.netfilter.nf_conntrack_udp_timeout": "2"})
    return lab


def prepare(lab):
    lab.run(lab.srv, ["nft", "-f", "-"], input=(
        "table ip sink {\n  chain drop_input {\n    type filter hook input priority 0;\n"
        "    udp dport 1-65000 drop\n  }\n}\n"))
    lab.run(lab.gw, ["nft", "-f", "-"], input=(
        "table ip truth {\n  chain count_forward {\n    type filter hook forward priority 0;\n"
        "    ip saddr 100.64.0.0/10 counter\n  }\n}\n"))


def send(args, lab, flows, rate, packets):
    """Runs flowgen; returns ({source address: (bytes, packets)}, send rate)."""
    senders = 2 if args.two_senders and rate == 0 else 1
    half = [lab.sub_v4[i::senders] for i in range(senders)]
    procs = [lab.start(lab.sub, [args.flowgen, SRV_V4, str(flows // senders),
                                 str(rate / senders if rate else 0), str(packets), str(PAYLOAD)] + h)
             for h in half]
    reports = [json.loads(p.communicate(timeout=1200)[0]) for p in procs]
    sent = {}
    for r in reports:
        for addr, (_, pk) in r["per_source"].items():
            if pk:  # a source flowgen did not reach has no row, not a zero row
                sent[addr] = (pk * (PAYLOAD + IP_UDP), pk)
    return sent, sum(r["rate"] for r in reports)


def forwarded_packets(lab):
    seen = json.loads(lab.run(lab.gw, ["nft", "-j", "list", "table", "ip", "truth"]).stdout)
    return next(i["rule"]["expr"][1]["counter"] for i in seen["nftables"] if "rule" in i)["packets"]


def settle(read, expected, what, timeout=120):
    """Polls read() until it returns `expected` or `timeout` passes; the last reading."""
    last = {}

    def landed():
        nonlocal last
        last = read()
        return last == expected

    try:
        wait_for(landed, timeout=timeout, interval=1, what=what)
    except TimeoutError:
        pass
    return last


def run_scenario(args, name, flows, rate, packets, subscribers, journal=True, records=False):
    with bench_lab(subscribers) as lab:
        prepare(lab)
        os.environ["CTQUOTA_BIN"] = args.bin
        sinks = flow_records_bench.Records(lab) if records else None
        daemon = Daemon(lab, poll="10s", flush="1s", conntrack_extra='event_buffer_bytes = "128MiB"\n',
                        journal=journal, fd_store=journal,
                        extra_config=flow_records_bench.CONFIG if records else "")
        try:
            # Subscribers in one transaction through SQL: the CLI would take a process each.
            values = ",".join(f"('s{i}')" for i in range(subscribers))
            daemon.query(f"INSERT INTO subscribers (external_id) VALUES {values}")
            daemon.query("INSERT INTO subscriber_bindings (subscriber_id, prefix) "
                         "SELECT id, ('100.64.' || (1 + (substr(external_id, 2)::int / 250)) || '.' || "
                         "(1 + substr(external_id, 2)::int % 250) || '/32')::cidr FROM subscribers")
            daemon.start()
            pg = pg_dir_of(daemon.url)
            cpu0 = (cpu_seconds(daemon.proc.pid), postgres_cpu(pg),
                    cpu_seconds(sinks.nfcapd.proc.pid, children=True) if sinks else 0,
                    machine_cpu())
            started = time.monotonic()
            sent, send_rate = send(args, lab, flows, rate, packets)
            expected = {f"s{lab.sub_v4.index(a)}": {"up_bytes": b, "up_packets": pk,
                                                    "down_bytes": 0, "down_packets": 0}
                        for a, (b, pk) in sent.items()}
            wait_for(lambda: lab.conntrack_count() == 0, timeout=300, interval=1, what="table to drain")
            total = {"up_bytes": sum(e["up_bytes"] for e in expected.values())}
            fwd_packets = forwarded_packets(lab)
            last = settle(daemon.totals, expected, "totals")
            settled = sinks.settle(daemon, flows) if sinks else None
            elapsed = time.monotonic() - started
            # Packets conntrack itself dropped from its counters: when two CPUs
            # create the same entry at once, the loser's counters are discarded.
            stats = lab.run(lab.gw, ["conntrack", "-S"]).stdout
            clashes = sum(int(x) for x in re.findall(r"clash_resolve=(\d+)", stats))
            cpu1 = (cpu_seconds(daemon.proc.pid), postgres_cpu(pg),
                    cpu_seconds(sinks.nfcapd.proc.pid, children=True) if sinks else 0)
            machine, exceeded = machine_over_window(args, started, cpu0[3], 100_000 / flows)
            journaled = journal_bytes(lab)
            daemon.stop()
            log = daemon.read_log()
            status = [l for l in log.splitlines() if "status:" in l][-1]
            got_bytes = sum(v["up_bytes"] for v in last.values())
            per100k = 100_000 / flows
            result = {
                "scenario": name, "journal": journal, "flows": flows, "packets_per_flow": packets,
                "subscribers": subscribers, "asked_rate": rate, "send_rate": round(send_rate),
                "conntrack_saw_all": fwd_packets == flows * packets,
                "exact": last == expected, "missing_bytes": total["up_bytes"] - got_bytes,
                "ctquotad_cpu_s_per_100k": round((cpu1[0] - cpu0[0]) * per100k, 3),
                "postgres_cpu_s_per_100k": round((cpu1[1] - cpu0[1]) * per100k, 3),
                "machine_cpu_s_per_100k": machine, "machine_window_exceeded": exceeded,
                "journal_bytes_per_100k": round(journaled * per100k),
                "conntrack_clash_resolve": clashes, "wall_s": round(elapsed, 1), "daemon_status": status.split("status: ")[1],
            }
            if sinks:
                result["records"] = sinks.result(daemon, settled, flows, cpu1[2] - cpu0[2])
            if last != expected:
                diff = {k: (expected.get(k), last.get(k)) for k in set(expected) | set(last)
                        if expected.get(k) != last.get(k)}
                result["differences"] = dict(list(diff.items())[:5])
                result["differing_subscribers"] = len(diff)
            print(json.dumps(result), flush=True)
            return result
        finally:
            daemon.close()


def run_pmacct(args, name, flows, rate, packets, subscribers):
    """The same load with pmacct (pmacct_peer.py) instead of ctquotad."""
    url = os.environ["CTQUOTA_TEST_DB_URL"]
    pg = pg_dir_of(url)
    port = int(re.search(r"port=(\d+)", url).group(1))
    with bench_lab(subscribers) as lab:
        prepare(lab)
        peer = Pmacct(lab, pg, port)
        try:
            peer.start()
            cpu0 = (peer.cpu(), postgres_cpu(pg), machine_cpu())
            started = time.monotonic()
            sent, send_rate = send(args, lab, flows, rate, packets)
            last = settle(peer.totals, sent, "pmacct's totals")
            elapsed = time.monotonic() - started
            cpu1 = (peer.cpu(), postgres_cpu(pg))
            # The machine's window takes in the table's drain too (conntrack's
            # garbage collection is the gateway's work in every design).
            if args.machine_window:
                wait_for(lambda: lab.conntrack_count() == 0, timeout=300, interval=1,
                         what="table to drain")
            per100k = 100_000 / flows
            machine, exceeded = machine_over_window(args, started, cpu0[2], per100k)
            result = {
                "scenario": name, "peer": "pmacct", "flows": flows, "packets_per_flow": packets,
                "subscribers": subscribers, "asked_rate": rate, "send_rate": round(send_rate),
                "exact": last == sent,
                "missing_bytes": sum(b for b, _ in sent.values()) - sum(b for b, _ in last.values()),
                "pmacct_cpu_s_per_100k": round((cpu1[0] - cpu0[0]) * per100k, 3),
                "postgres_cpu_s_per_100k": round((cpu1[1] - cpu0[1]) * per100k, 3),
                "machine_cpu_s_per_100k": machine, "machine_window_exceeded": exceeded,
                "wall_s": round(elapsed, 1),
            }
            print(json.dumps(result), flush=True)
            return result
        finally:
            peer.stop()


def run_baseline(args, name, flows, rate, packets, subscribers):
    """The same load with no accounting at all (conntrack, forwarding and the
    sender only): what the machine spends anyway, to subtract from the
    machine figures of ctquotad and pmacct."""
    with bench_lab(subscribers) as lab:
        prepare(lab)
        cpu0 = machine_cpu()
        started = time.monotonic()
        send(args, lab, flows, rate, packets)
        wait_for(lambda: lab.conntrack_count() == 0, timeout=300, interval=1, what="table to drain")
        elapsed = time.monotonic() - started
        machine, exceeded = machine_over_window(args, started, cpu0, 100_000 / flows)
        result = {
            "scenario": name, "peer": "none", "flows": flows, "packets_per_flow": packets,
            "conntrack_saw_all": forwarded_packets(lab) == flows * packets,
            "machine_cpu_s_per_100k": machine, "machine_window_exceeded": exceeded,
            "wall_s": round(elapsed, 1),
        }
        print(json.dumps(result), flush=True)
        return result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--flowgen", required=True)
    ap.add_argument("--quick", action="store_true", help="small sizes, as a smoke test")
    ap.add_argument("--only", help="run one scenario by name")
    ap.add_argument("--two-senders", action="store_true")
    ap.add_argument("--journal-cost", action="store_true",
                    help="each scenario without the event journal, then with it (the default)")
    ap.add_argument("--records", choices=("off", "on", "both"), default="off",
                    help="flow records (flow log + IPFIX to nfcapd): off, on, or each scenario both ways")
    ap.add_argument("--peer", choices=("none", "pmacct"), default="none",
                    help="pmacct: after each ctquotad run, the same load through pmacct (uacctd)")
    ap.add_argument("--baseline", action="store_true",
                    help="after each scenario, the same load with no accounting, for the "
                         "machine's CPU that accounting adds (needs --machine-window)")
    ap.add_argument("--machine-window", type=float, default=0,
                    help="seconds from the start of the load over which every run measures "
                         "the whole machine's busy CPU (long enough for the table to drain "
                         "by conntrack's own garbage collection, about 60 s after the load)")
    args = ap.parse_args()
    if args.baseline and not args.machine_window:
        ap.error("--baseline needs --machine-window")
    if args.quick:
        scenarios = [("quick-burst", 5000, 0, 2, 50)]
    else:
        scenarios = [
            ("burst-200k", 200_000, 0, 2, 1000),
            ("sustained-1M-at-50k", 1_000_000, 50_000, 2, 1000),
            # Same flows, same rate, same duration: only packets per flow change.
            ("20k-2pkt-at-1k", 20_000, 1_000, 2, 1000),
            ("20k-20pkt-at-1k", 20_000, 1_000, 20, 1000),
            ("20k-200pkt-at-1k", 20_000, 1_000, 200, 1000),
        ]
    failed = False
    for s in scenarios:
        if args.only and s[0] != args.only:
            continue
        journals = (False, True) if args.journal_cost else (True,)
        record_modes = {"off": [False], "on": [True], "both": [False, True]}[args.records]
        for journal, records in [(j, r) for j in journals for r in record_modes]:
            r = run_scenario(args, *s, journal=journal, records=records)
            failed |= not (r["exact"] and r["conntrack_saw_all"])
        if args.peer == "pmacct":
            failed |= not run_pmacct(args, *s)["exact"]
        if args.baseline:
            failed |= not run_baseline(args, *s)["conntrack_saw_all"]
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
