#!/usr/bin/env python3
"""IPFIX collectors for the flow record tests (python3 stdlib + Debian's nfdump):

    Nfcapd(topo, ns, port)      nfcapd(1) from Debian's nfdump, a real collector:
      .start() / .stop()        stop() makes it write its file and report its counters
      .flows()                  the flows nfdump(1) reads back (its JSON output)
      .stats                    nfcapd's own summary line after stop(), e.g. sequence errors

    python3 ipfix_tools.py capture PORT [ADDRESS]
        Prints {"ready": true}, then every datagram received on ADDRESS:PORT
        (UDP) as {"at": unix seconds, "hex": "..."}; SIGTERM ends it.
    python3 ipfix_tools.py capture-tcp PORT [ADDRESS]
        The same over TCP: each message of each accepted connection as
        {"conn": n, "at", "hex"} (n counts connections from 1); SIGTERM
        closes every connection and ends it.

    decode(messages)            -> [Message]: header fields, template ids sent,
                                   data records as {element: value} (a second
                                   reading of the bytes, for what nfdump 1.7
                                   does not decode: postNAT IPv6 addresses 281/282)
"""

import ipaddress
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REVERSE_PEN = 29305

# Information elements decoded by name (IANA numbers; reverse = RFC 5103 PEN).
NAMES = {
    1: "octets", 2: "packets", 4: "proto", 7: "sport", 8: "src4", 11: "dport", 12: "dst4",
    27: "src6", 28: "dst6", 136: "end_reason", 148: "flow_id", 152: "start_ms",
    153: "end_ms", 225: "post_src4", 226: "post_dst4", 227: "post_sport", 228: "post_dport",
    230: "nat_event", 239: "biflow_direction", 281: "post_src6", 282: "post_dst6",
}


class Message:
    def __init__(self, at, sequence, domain, export_time, templates, records):
        self.at, self.sequence, self.domain = at, sequence, domain
        self.export_time, self.templates, self.records = export_time, templates, records


def _value(name, raw):
    if name.startswith(("src", "dst", "post_src", "post_dst")) and len(raw) in (4, 16):
        return str(ipaddress.ip_address(raw))
    return int.from_bytes(raw, "big")


def decode(captured):
    """captured: [{"at", "hex"}] in arrival order; templates carry over between messages."""
    templates = {}
    out = []
    for item in captured:
        m = bytes.fromhex(item["hex"])
        version, length, export_time, sequence, domain = struct.unpack_from("!HHIII", m, 0)
        assert version == 10 and length == len(m), (version, length, len(m))
        at = 16
        sent_templates, records = [], []
        while at < len(m):
            set_id, set_len = struct.unpack_from("!HH", m, at)
            end = at + set_len
            at += 4
            if set_id == 2:
                while at + 4 <= end:
                    tid, count = struct.unpack_from("!HH", m, at)
                    at += 4
                    fields = []
                    for _ in range(count):
                        ie, flen = struct.unpack_from("!HH", m, at)
                        at += 4
                        pen = 0
                        if ie & 0x8000:
                            (pen,) = struct.unpack_from("!I", m, at)
                            ie &= 0x7FFF
                            at += 4
                        fields.append((ie, flen, pen))
                    templates[tid] = fields
                    sent_templates.append(tid)
            elif set_id >= 256:
                fields = templates.get(set_id)
                if fields is None:  # no template yet: a collector drops these
                    at = end
                    continue
                while at < end:
                    rec = {"template": set_id}
                    for ie, flen, pen in fields:
                        name = NAMES.get(ie, str(ie))
                        if pen == REVERSE_PEN:
                            name = "reverse_" + name
                        rec[name] = _value(name.replace("reverse_", ""), m[at:at + flen])
                        at += flen
                    records.append(rec)
            at = end
        out.append(Message(item["at"], sequence, domain, export_time, sent_templates, records))
    return out


def _read(path):
    with open(path, errors="replace") as f:
        return f.read()


class Nfcapd:
    """nfcapd listening on ADDRESS:PORT inside namespace `ns`, writing into a
    directory of its own; nfdump reads the files back."""

    def __init__(self, topo, ns, port, address="127.0.0.1"):
        self.topo, self.ns, self.port, self.address = topo, ns, port, address
        self.dir = os.path.join(topo.workdir, f"nfcapd-{port}")
        self.proc = None
        self.stats = None

    def start(self):
        os.makedirs(self.dir, exist_ok=True)
        self.proc = self.topo.start_in(self.ns, ["nfcapd", "-w", self.dir, "-b", self.address,
                                                 "-p", str(self.port), "-t", "3600", "-I",
                                                 "ctquota-test", "-B", str(32 << 20)],
                                      name="nfcapd", capture=False)
        log = self.proc.log_path
        deadline = time.monotonic() + 10
        while "Startup nfcapd" not in _read(log):
            if not self.proc.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"nfcapd did not start: {self.proc.tail()}")
            time.sleep(0.05)
        return self

    def stop(self):
        """SIGTERM: nfcapd closes its file and prints its counters."""
        if self.proc is not None and self.proc.alive():
            self.proc.stop(signal.SIGTERM, timeout=15)
        text = _read(self.proc.log_path)
        m = re.search(r"Flows: (\d+), Packets: (\d+), Bytes: (\d+), Sequence Errors: (\d+), "
                      r"Bad Packets: (\d+)", text)
        self.stats = {k: int(v) for k, v in zip(
            ("flows", "packets", "bytes", "sequence_errors", "bad_packets"), m.groups())} if m else None
        return self.stats

    def flows(self):
        """Every flow record in the collector's files, as nfdump's JSON objects."""
        files = sorted(f for f in os.listdir(self.dir) if f.startswith("nfcapd.") and
                       "current" not in f)
        out = []
        for f in files:
            r = subprocess.run(["nfdump", "-r", os.path.join(self.dir, f), "-o", "json"],
                               capture_output=True, text=True, timeout=60, check=True)
            text = r.stdout.strip()
            if text:
                out += json.loads(text)
        return out


def capture(port, address):
    fam = socket.AF_INET6 if ":" in address else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.bind((address, port))
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    print(json.dumps({"ready": True}), flush=True)
    s.settimeout(0.2)
    while not stop:
        try:
            data = s.recv(65535)
        except socket.timeout:
            continue
        except InterruptedError:
            continue
        print(json.dumps({"at": time.time(), "hex": data.hex()}), flush=True)
    return 0


def capture_tcp(port, address):
    import selectors
    fam = socket.AF_INET6 if ":" in address else socket.AF_INET
    listener = socket.socket(fam, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((address, port))
    listener.listen(8)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ, None)
    buffers = {}
    print(json.dumps({"ready": True}), flush=True)
    while not stop:
        for key, _ in sel.select(0.2):
            if key.data is None:
                conn, _ = listener.accept()
                n = len(buffers) + 1
                buffers[n] = b""
                sel.register(conn, selectors.EVENT_READ, n)
                continue
            n = key.data
            data = key.fileobj.recv(65536)
            if not data:
                sel.unregister(key.fileobj)
                key.fileobj.close()
                continue
            buf = buffers[n] + data
            while len(buf) >= 4 and len(buf) >= struct.unpack_from("!H", buf, 2)[0]:
                length = struct.unpack_from("!H", buf, 2)[0]
                print(json.dumps({"conn": n, "at": time.time(), "hex": buf[:length].hex()}),
                      flush=True)
                buf = buf[length:]
            buffers[n] = buf
    for key in list(sel.get_map().values()):
        key.fileobj.close()
    return 0


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] in ("capture", "capture-tcp"):
        run = capture if sys.argv[1] == "capture" else capture_tcp
        sys.exit(run(int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else "127.0.0.1"))
    sys.stderr.write(__doc__)
    sys.exit(2)
