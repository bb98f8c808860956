#!/usr/bin/env python3
"""Flow records end to end: real packets through the lab's NAT gateway, the
kernel's conntrack, ctquotad with both record sinks, real collectors.

* IPFIX into nfcapd (Debian's nfdump) started after the exporter, so only
  the template refresh lets it decode anything; nfdump reads the files back
  and every flow's addresses, ports, post-NAT address and port, bytes and
  packets both ways, start and end equal the ground truth: the traffic
  generator's counts and the kernel's own DESTROY events (tuples, NAT,
  timestamps) read by ctnl.py. A second collector (ipfix_tools.py capture)
  checks what nfdump 1.7 does not decode: IPv6 post-NAT addresses, sequence
  numbers message by message, the observation domain.
* The PostgreSQL flow log equals the same ground truth; retention drops an
  old partition; GET /api/v1/nat-lookup finds the subscriber of a
  masqueraded connection and nothing for a port and time nobody used.
* A dead collector and a stalled flow log (its table locked) during a burst
  of 20k flows: totals exact, no DESTROY lost, the sinks' drops counted.
"""

import json
import os
import re
import subprocess
import sys
import time
import unittest
from datetime import datetime, timedelta, timezone

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ctviews import CtWatcher, LongTcp, ground_truth_keys, make_udp_plan, udp_traffic  # noqa: E402
from daemon_harness import Daemon  # noqa: E402
from ipfix_tools import HERE, Nfcapd, decode  # noqa: E402
from lab import SRV_V4, Lab, wait_for  # noqa: E402
from nsproc import PYTHON, TRAFFIC  # noqa: E402

API_PORT = 18462
NFCAPD_PORT = 4739
CAPTURE_PORT = 4740
DEAD_PORT = 4799
TCP_PORT = 4741
DOMAIN = 4242
NAT_V4, NAT_V6 = "198.18.0.1", "2001:db8:ffff::1"


def iso_ms(ns):
    t = datetime.fromtimestamp(ns // 1_000_000 / 1000, tz=timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def nfdump_ms(text):
    """nfdump's JSON time ("2026-12-07T01:59:48.668", UTC here) in ms since the epoch."""
    t = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=timezone.utc)
    return round(t.timestamp() * 1000)


class RecordsLab:
    """The lab, its traffic servers and a daemon with the given record sinks."""

    def __init__(self, test, sinks, n_v4=6, n_v6=2, poll="500ms"):
        self.lab = Lab(n_v4=n_v4, n_v6=n_v6).__enter__()
        test.addCleanup(self.lab.close)
        for mode, port in (("udp-server", 9000), ("tcp-server", 9100)):
            p = self.lab.start_in(self.lab.srv, [PYTHON, TRAFFIC, mode, "--port", str(port)],
                                  name=mode)
            p.wait_line(lambda x: isinstance(x, dict) and x.get("ready"), 15, "ready")
        self.lab.udp_port, self.lab.tcp_port = 9000, 9100
        self.daemon = Daemon(self.lab, poll=poll, flush="250ms", extra_config=(
            f'[api]\nlisten = "127.0.0.1:{API_PORT}"\n' + sinks))
        test.addCleanup(self.daemon.close)
        test.addCleanup(self.dump_log_on_failure, test)
        self.token = self.daemon.cli("token", "create", "--role", "billing").stdout.strip()

    def dump_log_on_failure(self, test):
        result = getattr(getattr(test, "_outcome", None), "result", None)
        bad = getattr(result, "failures", []) + getattr(result, "errors", [])
        if any(t is test for t, _ in bad):
            print("---- ctquotad log ----\n" + self.daemon.read_log()[-8000:], file=sys.stderr)

    def api(self, path):
        out = self.lab.run(self.lab.gw, ["curl", "-s", "-H", f"Authorization: Bearer {self.token}",
                                         "-w", "\n%{http_code}",
                                         f"http://127.0.0.1:{API_PORT}{path}"]).stdout
        text, _, code = out.rpartition("\n")
        return int(code), json.loads(text) if text.strip() else None

    def metrics(self):
        return self.daemon.metrics(API_PORT)

    def metric(self, name):
        return self.metrics().get(name, 0.0)


class FlowRecordsEndToEnd(unittest.TestCase):
    def test_ipfix_and_flow_log_equal_the_ground_truth(self):
        old_day = (datetime.now(timezone.utc) - timedelta(days=10)).date()
        r = RecordsLab(self, (
            '[records]\ninterim_interval = "2s"\n'
            '[flowlog]\nenabled = true\nretention = "3d"\nflush_interval = "200ms"\n'
            f'[ipfix]\ncollectors = ["127.0.0.1:{NFCAPD_PORT}", "127.0.0.1:{CAPTURE_PORT}"]\n'
            f'observation_domain = {DOMAIN}\ntemplate_refresh = "2s"\ntemplate_every = 1000\n'))
        lab, daemon = r.lab, r.daemon
        subs = {lab.sub_v4[0]: "cust-a", lab.sub_v4[1]: "cust-b", lab.sub_v4[2]: "cust-c",
                lab.sub_v6[0]: "cust-6a", lab.sub_v6[1]: "cust-6b"}
        for addr, sub in subs.items():
            daemon.add_subscriber(sub, addr + ("/128" if ":" in addr else "/32"))
        nobody = lab.sub_v4[5]
        # Ten days old, past the 3 days of retention: the daemon drops it.
        name = f"flow_log_p{old_day:%Y%m%d}"
        daemon.query(f"CREATE TABLE {name} PARTITION OF flow_log FOR VALUES FROM "
                     f"('{old_day}') TO ('{old_day + timedelta(days=1)}')")
        capture = lab.start_in(lab.gw, [PYTHON, os.path.join(HERE, "ipfix_tools.py"), "capture",
                                        str(CAPTURE_PORT)], name="ipfix-capture")
        capture.wait_line(lambda x: isinstance(x, dict) and x.get("ready"), 10, "ready")
        watcher = CtWatcher(lab).start()
        daemon.start()

        # Wave 0, before nfcapd runs: its templates and records go nowhere.
        early = udp_traffic(lab, [{"src": lab.sub_v4[0], "packets": 2, "req": 64, "reply": 64}])
        watcher.wait_destroyed(ground_truth_keys(early), timeout=30)
        wait_for(lambda: r.metric("ctquota_flow_records_final_total") >= 1, 10,
                 what="the first record")
        wait_for(lambda: r.metric("ctquota_ipfix_messages_total") >= 2, 10, what="messages sent")
        nfcapd = Nfcapd(lab, lab.gw, NFCAPD_PORT).start()
        templates = r.metric("ctquota_ipfix_template_messages_total")
        wait_for(lambda: r.metric("ctquota_ipfix_template_messages_total") >= templates + 2, 15,
                 what="the templates sent again (refresh timer)")

        # The traffic: UDP with replies (IPv4 masqueraded, IPv6, nobody's), TCP v4 and v6
        # long enough for interim records.
        tcp4 = LongTcp(lab, lab.sub_v4[1], up_rate=100_000, down_rate=30_000, duration=5).start()
        tcp6 = LongTcp(lab, lab.sub_v6[1], up_rate=50_000, down_rate=50_000, duration=5).start()
        plan = make_udp_plan([lab.sub_v4[0], lab.sub_v4[2], nobody, lab.sub_v6[0]], seed=12,
                             flows=(2, 3), many_every=2, many_packets=(20, 40))
        truth = udp_traffic(lab, plan)
        self.assertEqual(truth["lost_replies"], 0, "the lab itself lost packets")
        tcp4.wait_done()
        tcp6.wait_done()
        udp = ground_truth_keys(truth)
        keys = set(udp) | {tcp4.key, tcp6.key}
        events = watcher.wait_destroyed(keys, timeout=60)
        kernel = {}
        for k in keys:
            self.assertEqual(len(events[k]), 1, f"one DESTROY for {k}")
            kernel[k] = events[k][0]
        for k, f in udp.items():  # the generator's counts are the kernel's
            e = kernel[k]
            self.assertEqual((e["orig_bytes"], e["orig_packets"], e["reply_bytes"], e["reply_packets"]),
                             (f["up_bytes"], f["up_packets"], f["down_bytes"], f["down_packets"]), k)

        def logged():
            rows = daemon.query("SELECT l4proto, host(orig_src), orig_sport, host(orig_dst), "
                                "orig_dport FROM flow_log WHERE final")
            return keys <= {(int(x[0]), x[1], int(x[2]), x[3], int(x[4])) for x in rows}
        wait_for(logged, 30, interval=0.2, what="the final records in the flow log")
        self.check_lookup(r, kernel, keys, subs)
        self.assertEqual(daemon.stop(), 0)
        stats = nfcapd.stop()
        capture.stop()

        self.check_nfdump(nfcapd.flows(), kernel, keys)
        self.assertEqual(stats["sequence_errors"], 0, "nfcapd saw a gap in the sequence numbers")
        self.check_capture(capture, kernel, keys)
        self.check_flow_log(daemon, kernel, keys, subs, nobody)
        self.assertEqual(int(daemon.query(f"SELECT count(*) FROM pg_class WHERE relname = '{name}'")[0][0]), 0,
                         "retention left the old partition")
        self.assertIn(f"dropped partition {name}", daemon.read_log())

    def test_dead_collector_and_stalled_flow_log_change_no_totals(self):
        """A burst of 20k flows while the IPFIX collector is down (its port
        refuses) and the flow log's table is locked by another session: the
        totals stay exact and no DESTROY is lost; the sinks count their drops
        and the flow log catches up once the lock goes."""
        r = RecordsLab(self, (
            f'[ipfix]\ncollectors = ["127.0.0.1:{DEAD_PORT}"]\n'
            '[flowlog]\nenabled = true\nqueue_records = 2000\nbatch_records = 500\n'
            'flush_interval = "100ms"\n'), n_v4=4, n_v6=1, poll="1s")
        lab, daemon = r.lab, r.daemon
        # The test's own API calls on the gateway's loopback stay out of conntrack:
        # the records counted below are the burst's.
        lab.run(lab.gw, ["nft", "-f", "-"], input=(
            'table inet test_raw {\n  chain pre { type filter hook prerouting priority raw; '
            'iif "lo" notrack; }\n  chain out { type filter hook output priority raw; '
            'oif "lo" notrack; }\n}\n'))
        sources = lab.sub_v4[:4]
        counters = "".join(f"    ip saddr {a} counter\n" for a in sources)
        lab.run(lab.gw, ["nft", "-f", "-"], input=(
            "table ip truth {\n  chain count_forward {\n    type filter hook forward priority 0;\n"
            + counters + "  }\n}\n"))
        lab.run(lab.srv, ["nft", "-f", "-"], input=(
            "table ip sink {\n  chain drop_input {\n    type filter hook input priority 0;\n"
            "    udp dport 1-65000 drop\n  }\n}\n"))
        for i, a in enumerate(sources):
            daemon.add_subscriber(f"burst-{i}", a + "/32")
        locker = subprocess.Popen(["psql", "-X", "-q", "-A", "-t", daemon.url], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.addCleanup(locker.stdout.close)
        self.addCleanup(lambda: locker.poll() is None and locker.kill())
        locker.stdin.write("BEGIN;\nLOCK TABLE flow_log IN ACCESS EXCLUSIVE MODE;\nSELECT 'locked';\n")
        locker.stdin.flush()
        self.assertEqual(locker.stdout.readline().strip(), "locked")
        daemon.start()

        flows = 20000
        flowgen = os.environ.get("CTQUOTA_FLOWGEN", "build/ci/tests/bench/flowgen")
        out = lab.run(lab.sub, [flowgen, SRV_V4, str(flows), "0", "2", "100"] + sources).stdout
        self.assertEqual(json.loads(out)["flows"], flows)
        truth = {}
        def drained():
            live = lab.run(lab.gw, ["conntrack", "-L", "-s", "100.64.0.0/10"], check=False).stdout
            return not live.strip()
        wait_for(drained, 120, interval=0.5, what="the burst's DESTROY events")
        listing = json.loads(lab.run(lab.gw, ["nft", "-j", "list", "table", "ip", "truth"]).stdout)
        for item in listing["nftables"]:
            rule = item.get("rule")
            if rule:
                c = rule["expr"][1]["counter"]
                truth[f"burst-{sources.index(rule['expr'][0]['match']['right'])}"] = (c["bytes"], c["packets"])
        self.assertEqual(sum(p for _, p in truth.values()), 2 * flows, "the lab dropped packets")
        expected = {k: {"up_bytes": b, "up_packets": p, "down_bytes": 0, "down_packets": 0}
                    for k, (b, p) in truth.items()}
        last = {}

        def exact():
            nonlocal last
            last = daemon.totals()
            return last == expected
        try:
            wait_for(exact, 60, interval=0.5, what="exact totals")
        except TimeoutError:
            pass
        self.assertEqual(last, expected, "the sinks changed the totals")
        # Every DESTROY made its final record (the dumps alone make the totals exact).
        m = wait_for(lambda: (x := r.metrics())["ctquota_flow_records_final_total"] >= flows and x,
                     30, interval=0.5, what="a final record per flow")
        made = m["ctquota_flow_records_final_total"] + m["ctquota_flow_records_interim_total"]
        self.assertGreaterEqual(m["ctquota_flow_records_final_total"], flows)
        self.assertGreater(m['ctquota_sink_records_dropped_total{sink="flowlog"}'], 0,
                           "the flow log's queue never filled: the test proves nothing")
        self.assertEqual(m['ctquota_sink_records_written_total{sink="flowlog"}'], 0)
        self.assertGreater(m["ctquota_ipfix_send_errors_total"], 0)
        # The exporter's last error names the collector and the kernel's answer.
        last_errors = [k for k in m if k.startswith('ctquota_sink_last_error{sink="ipfix"')]
        self.assertEqual(len(last_errors), 1, last_errors)
        self.assertIn(f'error="127.0.0.1:{DEAD_PORT}: send: Connection refused"', last_errors[0])
        self.assertLess(abs(m['ctquota_sink_last_error_timestamp_seconds{sink="ipfix"}']
                            - time.time()), 300)
        self.assertEqual(m["ctquota_queue_full_waits_total"], 0, "the readers waited")
        self.assertEqual(m["ctquota_flows_lost_total"], 0)

        locker.stdin.write("COMMIT;\n")
        locker.stdin.close()
        locker.wait(timeout=10)

        def settled():
            m2 = r.metrics()
            w = m2['ctquota_sink_records_written_total{sink="flowlog"}']
            d = m2['ctquota_sink_records_dropped_total{sink="flowlog"}']
            q = m2['ctquota_sink_queue_records{sink="flowlog"}']
            total = m2["ctquota_flow_records_final_total"] + m2["ctquota_flow_records_interim_total"]
            return q == 0 and w > 0 and w + d == total and (w, total)
        written, total = wait_for(settled, 90, interval=0.5, what="the flow log to catch up")
        self.assertGreaterEqual(total, made)
        self.assertEqual(int(daemon.query("SELECT count(*) FROM flow_log")[0][0]), written,
                         "rows in the flow log differ from records written")
        self.assertEqual(daemon.stop(), 0)
        status = re.findall(r"status: (.*)", daemon.read_log())[-1].split()
        fields = {status[i]: int(status[i + 1]) for i in range(0, len(status) - 1, 2)}
        self.assertEqual(fields["lost_flows"], 0)
        self.assertEqual(fields["queue_overflows"], 0)
        log = daemon.read_log()
        self.assertIn("the flowlog sink's queue is full", log)
        self.assertIn(f"IPFIX: collector 127.0.0.1:{DEAD_PORT}: send failed", log)

    def test_ipfix_over_tcp_reconnects_with_templates_and_a_fresh_sequence(self):
        """transport = "tcp": the collector starts after the exporter (connect
        refused, retried with backoff), gets the templates first and sequence 0;
        when it closes the connection the exporter reconnects on its own, and the
        new session starts over (templates, sequence 0). Every record equals the
        kernel's DESTROY event."""
        r = RecordsLab(self, (f'[ipfix]\ncollectors = ["127.0.0.1:{TCP_PORT}"]\ntransport = "tcp"\n'
                              f'observation_domain = {DOMAIN}\n'), n_v4=2, n_v6=1)
        lab, daemon = r.lab, r.daemon
        daemon.add_subscriber("tcp-a", lab.sub_v4[0] + "/32")
        daemon.add_subscriber("tcp-6", lab.sub_v6_prefixes[0])
        watcher = CtWatcher(lab).start()
        daemon.start()
        wait_for(lambda: r.metric("ctquota_ipfix_send_errors_total") >= 1, 10,
                 what="a refused connect")

        def start_capture():
            p = lab.start_in(lab.gw, [PYTHON, os.path.join(HERE, "ipfix_tools.py"), "capture-tcp",
                                      str(TCP_PORT)], name="ipfix-tcp")
            p.wait_line(lambda x: isinstance(x, dict) and x.get("ready"), 10, "ready")
            return p

        def connection_opened(p, n):
            # Templates go out as soon as a session starts, with or without records.
            p.wait_line(lambda x: isinstance(x, dict) and x.get("conn") == n, 15,
                        f"connection {n}")

        def wave(p):
            plan = [{"src": a, "packets": 3, "req": 100 + i, "reply": 200 + i}
                    for i, a in enumerate((lab.sub_v4[0], lab.sub_v6[0], lab.sub_v4[0]))]
            keys = set(ground_truth_keys(udp_traffic(lab, plan)))
            kernel = {k: v[0] for k, v in watcher.wait_destroyed(keys, timeout=30).items()}

            def delivered():
                got = {}
                for m in decode([x for x in p.lines if isinstance(x, dict) and "hex" in x]):
                    for rec in m.records:
                        k = (rec["proto"], rec.get("src4") or rec.get("src6"), rec["sport"],
                             rec.get("dst4") or rec.get("dst6"), rec["dport"])
                        got[k] = rec
                return all(k in got for k in keys) and got
            got = wait_for(delivered, 15, interval=0.2, what="the wave's records")
            for k in keys:
                e, rec = kernel[k], got[k]
                self.assertEqual((rec["octets"], rec["packets"], rec["reverse_octets"], rec["reverse_packets"]),
                                 (e["orig_bytes"], e["orig_packets"], e["reply_bytes"], e["reply_packets"]))
                self.assertEqual((rec["start_ms"], rec["end_ms"]), (e["start"] // 10**6, e["stop"] // 10**6))

        first = start_capture()
        connection_opened(first, 1)
        wave(first)
        first.stop()  # the collector goes away, closing the connection
        second = start_capture()
        connection_opened(second, 1)
        wave(second)
        for p in (first, second):
            msgs = decode([x for x in p.lines if isinstance(x, dict) and "hex" in x])
            self.assertTrue(msgs[0].templates, "a session must start with the templates")
            self.assertEqual(msgs[0].sequence, 0)
            self.assertEqual(sum(1 for m in msgs if m.templates), 1, "templates again within a session")
            for a, b in zip(msgs, msgs[1:]):
                self.assertEqual(b.sequence, a.sequence + len(a.records))
            self.assertTrue(all(m.domain == DOMAIN for m in msgs))
        self.assertIn("closed the connection; reconnecting", daemon.read_log())

    def check_lookup(self, r, kernel, keys, subs):
        """GET /api/v1/nat-lookup: the public address and port of a connection at a
        moment of its life name its subscriber and tuple; nobody held an unused port."""
        def lookup(address, port, at, extra=""):
            code, body = r.api(f"/api/v1/nat-lookup?address={address}&port={port}&at={at}{extra}")
            self.assertEqual(code, 200, body)
            return body["items"]

        picks = [next(k for k in keys if k[0] == 17 and k[1] == r.lab.sub_v4[2]),
                 next(k for k in keys if k[0] == 17 and k[1] == r.lab.sub_v6[0]),
                 next(k for k in keys if k[0] == 6 and "." in k[1])]
        for k in picks:
            e = kernel[k]
            middle = iso_ms((e["start"] + e["stop"]) // 2)
            items = lookup(e["reply"]["dst"], e["reply"]["dport"], middle)
            mine = [i for i in items if i["original"]["src"] == k[1] and
                    i["original"]["src_port"] == k[2]]
            self.assertEqual(len(mine), 1, items)
            i = mine[0]
            self.assertEqual(i["subscriber_id"], subs[k[1]])
            self.assertEqual(i["protocol"], k[0])
            self.assertEqual(i["start"], iso_ms(e["start"]))
            self.assertEqual(i["end"], iso_ms(e["stop"]))
            self.assertEqual(i["reply"]["dst"], NAT_V4 if "." in k[1] else NAT_V6)
            self.assertEqual(i["reply"]["dst_port"], e["reply"]["dport"])
            self.assertEqual(i["orig_bytes"], e["orig_bytes"])
            # Narrowed to the far end as it saw the connection: that one connection.
            self.assertEqual(len(lookup(e["reply"]["dst"], e["reply"]["dport"], middle,
                                        f"&remote_address={e['reply']['src']}"
                                        f"&remote_port={e['reply']['sport']}")), 1)
            # An hour earlier nobody held it.
            self.assertEqual(lookup(e["reply"]["dst"], e["reply"]["dport"],
                                    iso_ms(e["start"] - 3600 * 10**9)), [])
        used = {kernel[k]["reply"]["dport"] for k in keys}
        unused = next(p for p in range(1024, 65536) if p not in used)
        e = kernel[picks[0]]
        self.assertEqual(lookup(NAT_V4, unused, iso_ms((e["start"] + e["stop"]) // 2)), [])
        code, body = r.api(f"/api/v1/nat-lookup?address={NAT_V4}&port=70000")
        self.assertEqual(code, 422)
        self.assertEqual({x["field"] for x in body["errors"]}, {"port", "at"})

    def check_nfdump(self, flows, kernel, keys):
        """nfdump's records, summed per connection (interim + final), against the kernel."""
        got = {}
        for f in flows:
            src = f.get("src4_addr") or f.get("src6_addr")
            dst = f.get("dst4_addr") or f.get("dst6_addr")
            k = (f["proto"], src, f["src_port"], dst, f["dst_port"])
            g = got.setdefault(k, {"in_bytes": 0, "in_packets": 0, "out_bytes": 0, "out_packets": 0,
                                   "first": None, "last": None, "records": 0, "xlt": set()})
            for c in ("in_bytes", "in_packets", "out_bytes", "out_packets"):
                g[c] += f[c]
            g["records"] += 1
            first, last = nfdump_ms(f["first"]), nfdump_ms(f["last"])
            g["first"] = first if g["first"] is None else min(g["first"], first)
            g["last"] = last if g["last"] is None else max(g["last"], last)
            g["xlt"].add((f.get("src4_xlt_ip"), int(f["src_xlt_port"]), f.get("dst4_xlt_ip"),
                          int(f["dst_xlt_port"]), f.get("nat_event_id")))
        for k in keys:
            e = kernel[k]
            self.assertIn(k, got, f"nfdump lacks {k}")
            g = got[k]
            self.assertEqual((g["in_bytes"], g["in_packets"], g["out_bytes"], g["out_packets"]),
                             (e["orig_bytes"], e["orig_packets"], e["reply_bytes"], e["reply_packets"]), k)
            self.assertEqual(g["first"], e["start"] // 1_000_000, f"start of {k}")
            self.assertEqual(g["last"], e["stop"] // 1_000_000, f"end of {k}")
            v4 = "." in k[1]
            final = [x for x in g["xlt"] if x[4] is not None]
            post = (e["reply"]["dst"] if v4 else None, e["reply"]["dport"],
                    e["reply"]["src"] if v4 else None, e["reply"]["sport"])
            for x in g["xlt"]:
                self.assertEqual(x[:4], post, f"post-NAT of {k}")
            if v4:
                self.assertEqual(post[0], NAT_V4)
                self.assertEqual(final, [post + ("5",)], f"natEvent of {k}")
        tcp = [k for k in keys if k[0] == 6]
        self.assertTrue(all(got[k]["records"] >= 2 for k in tcp), "no interim records for TCP")

    def check_capture(self, capture, kernel, keys):
        messages = decode([x for x in capture.lines if isinstance(x, dict) and "hex" in x])
        self.assertGreater(len(messages), 3)
        self.assertTrue(all(m.domain == DOMAIN for m in messages))
        self.assertEqual(messages[0].sequence, 0)
        for a, b in zip(messages, messages[1:]):
            self.assertEqual(b.sequence, (a.sequence + len(a.records)) % 2**32)
        self.assertGreater(sum(1 for m in messages if m.templates), 2, "templates sent once only")
        by_key = {}
        for m in messages:
            for rec in m.records:
                src = rec.get("src4") or rec.get("src6")
                dst = rec.get("dst4") or rec.get("dst6")
                by_key.setdefault((rec["proto"], src, rec["sport"], dst, rec["dport"]), []).append(rec)
        for k in keys:
            if ":" not in k[1]:
                continue
            e = kernel[k]
            for rec in by_key[k]:
                self.assertEqual((rec["post_src6"], rec["post_sport"], rec["post_dst6"], rec["post_dport"]),
                                 (e["reply"]["dst"], e["reply"]["dport"], e["reply"]["src"], e["reply"]["sport"]))
                self.assertEqual(rec["post_src6"], NAT_V6)

    def check_flow_log(self, daemon, kernel, keys, subs, nobody):
        rows = daemon.query(
            "SELECT l4proto, host(orig_src), orig_sport, host(orig_dst), orig_dport, host(reply_src), "
            "reply_sport, host(reply_dst), reply_dport, orig_bytes, orig_packets, reply_bytes, "
            "reply_packets, (extract(epoch from flow_start) * 1000000)::bigint, "
            "(extract(epoch from flow_end) * 1000000)::bigint, coalesce(s.external_id, ''), "
            "host(public_address), public_port, gateway_id "
            "FROM flow_log f LEFT JOIN subscribers s ON s.id = f.subscriber_id WHERE final")
        got = {}
        for row in rows:
            k = (int(row[0]), row[1], int(row[2]), row[3], int(row[4]))
            if k not in keys:
                continue  # wave 0, the exporter's own datagrams (a tuple used again)
            self.assertNotIn(k, got, f"two final records for {k}")
            got[k] = row
        for k in keys:
            e, row = kernel[k], got[k]
            self.assertEqual(row[5:9], [e["reply"]["src"], str(e["reply"]["sport"]), e["reply"]["dst"],
                                        str(e["reply"]["dport"])], k)
            self.assertEqual(list(map(int, row[9:13])), [e["orig_bytes"], e["orig_packets"],
                                                         e["reply_bytes"], e["reply_packets"]], k)
            self.assertEqual(int(row[13]), e["start"] // 1000, f"start of {k}")
            self.assertEqual(int(row[14]), e["stop"] // 1000, f"end of {k}")
            self.assertEqual(row[15], "" if k[1] == nobody else subs[k[1]], k)
            self.assertEqual(row[16:18], [e["reply"]["dst"], str(e["reply"]["dport"])], k)
            self.assertEqual(row[18], "gw-test")
        interim = int(daemon.query("SELECT count(*) FROM flow_log WHERE NOT final AND l4proto = 6 "
                                   "AND host(orig_src) = ANY(ARRAY[%s])" % ",".join(
                                       f"'{k[1]}'" for k in keys if k[0] == 6))[0][0])
        self.assertGreaterEqual(interim, 2, "no interim records for the long TCP connections")


if __name__ == "__main__":
    unittest.main(verbosity=2)
