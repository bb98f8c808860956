#!/usr/bin/env python3
"""Traffic tools for the netns tests (python3 stdlib only). Each subcommand is
meant to run inside a namespace through `ip netns exec NS python3 trafficgen.py ...`.

  udp-server --port P
      Echo-sized UDP server on 0.0.0.0:P and [::]:P. A request is
      u32 reply_len | u32 seq | padding (network order, >= 8 bytes); the reply
      is u32 seq | padding, reply_len bytes of payload in total (>= 4).
      Prints {"ready": true, ...} once bound; SIGTERM ends it.

  udp-client --plan FILE --server4 A --server6 A --port P [--window W]
             [--timeout S] [--gap S]
      FILE is a JSON list of flows: {"src": addr, "packets": n,
      "req": size | [sizes...], "reply": size | [sizes...], "port": optional,
      "gap": optional seconds between a reply and the next request}
      (sizes are UDP payload bytes; a list is cycled packet by packet; keep
      gaps below the gateway's UDP timeout to keep one conntrack entry).
      Each flow uses its own fresh socket bound to src (fresh source port:
      a new conntrack entry) and does stop-and-wait: one request
      outstanding, the next one is sent when its reply arrived or timed out.
      Up to W flows run at once. Sockets stay open until the end of the run
      so no source port is reused within a run.
      Prints one JSON object: the ground truth, counting only datagrams that
      were actually sent (send succeeded) and actually received:
        {"flows": [{"src", "sport", "dst", "dport", "family",
                    "up_packets", "up_bytes", "down_packets", "down_bytes",
                    "lost", "send_errors"}...],
         "subscribers": {addr: {"up_packets", "up_bytes", "down_packets",
                                "down_bytes", "flows"}},
         "lost_replies": n, "send_errors": n, "elapsed": s}
      Bytes are IP-layer: payload + 8 (UDP) + 20 (IPv4) or + 40 (IPv6).
      A lost reply makes the ground truth uncertain (the gateway may have
      counted it): "lost_replies" must be 0 for an exact comparison.

  tcp-server --port P
      Accepts connections on 0.0.0.0:P and [::]:P. Each client first sends a
      12-byte header "CTQT" | u32 down_rate (bytes/s) | u32 duration_ms;
      the server then sends at down_rate for duration_ms while reading and
      discarding everything, half-closes after its part, and closes after
      the client's EOF.

  tcp-client --src A --dst A --port P --up-rate B/s --down-rate B/s
             --duration S [--chunk BYTES]
      One paced TCP connection from src. JSON lines on stdout:
        {"event": "connected", "src", "sport", "dst", "dport", "family"}
        {"event": "progress", "t", "sent", "received"}      (every 0.2 s)
        {"event": "done", "sent", "received", "elapsed"}
      "sent"/"received" are TCP payload bytes; the connection closes with a
      normal FIN exchange (the client waits for the server's FIN).
"""

import argparse
import json
import resource
import selectors
import signal
import socket
import struct
import sys
import threading
import time

REQ_HDR = struct.Struct("!II")
REP_HDR = struct.Struct("!I")
MIN_REQ = REQ_HDR.size
MIN_REPLY = REP_HDR.size
TCP_HDR = struct.Struct("!4sII")
TCP_MAGIC = b"CTQT"


_out_lock = threading.Lock()


def out(obj):
    line = json.dumps(obj, separators=(",", ":")) + "\n"
    with _out_lock:
        sys.stdout.write(line)
        sys.stdout.flush()


def family_of(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def ip_overhead(family):
    return 20 if family == socket.AF_INET else 40


class _Stop(Exception):
    pass


def _raise_stop(_sig, _frm):
    raise _Stop()


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# ----------------------------------------------------------------- UDP server

def udp_server(args):
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    socks = []
    s4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    for s, addr in ((s4, ("0.0.0.0", args.port)), (s6, ("::", args.port))):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.setsockopt(socket.SOL_SOCKET, 33, 16 << 20)  # SO_RCVBUFFORCE
            s.setsockopt(socket.SOL_SOCKET, 32, 16 << 20)  # SO_SNDBUFFORCE
        except PermissionError:
            pass
        s.bind(addr)
        s.setblocking(False)
        socks.append(s)
    sel = selectors.DefaultSelector()
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
    out({"ready": True, "port": args.port})
    served = bad = 0
    pad = bytes(65536)
    try:
        while True:
            for key, _ in sel.select():
                s = key.fileobj
                while True:
                    try:
                        data, peer = s.recvfrom(65536)
                    except BlockingIOError:
                        break
                    if len(data) < MIN_REQ:
                        bad += 1
                        continue
                    reply_len, seq = REQ_HDR.unpack_from(data)
                    if reply_len < MIN_REPLY or reply_len > 65000:
                        bad += 1
                        continue
                    msg = REP_HDR.pack(seq) + pad[:reply_len - MIN_REPLY]
                    try:
                        s.sendto(msg, peer)
                        served += 1
                    except OSError as e:
                        sys.stderr.write(f"udp-server: sendto {peer}: {e}\n")
    except _Stop:
        pass
    sys.stderr.write(f"udp-server: served {served} requests, {bad} malformed\n")
    return 0


# ----------------------------------------------------------------- UDP client

class Flow:
    __slots__ = ("spec", "index", "sock", "src", "sport", "dst", "dport", "family",
                 "packets", "reqs", "replies", "sent", "next_seq", "outstanding",
                 "deadline", "up_packets", "up_bytes", "down_packets", "down_bytes",
                 "lost", "send_errors", "done", "awaiting", "given_up", "unexpected")

    def __init__(self, spec, index, dst, dport):
        self.spec = spec
        self.index = index
        self.src = spec["src"]
        self.family = family_of(self.src)
        self.dst = dst
        self.dport = dport
        self.packets = int(spec["packets"])
        self.reqs = spec["req"] if isinstance(spec["req"], list) else [spec["req"]]
        self.replies = spec["reply"] if isinstance(spec["reply"], list) else [spec["reply"]]
        for r in self.reqs:
            if r < MIN_REQ or r > 1400:
                raise ValueError(f"request payload {r} outside [{MIN_REQ}, 1400]")
        for r in self.replies:
            if r < MIN_REPLY or r > 1400:
                raise ValueError(f"reply payload {r} outside [{MIN_REPLY}, 1400]")
        self.sock = None
        self.sport = None
        self.sent = 0
        self.next_seq = 0
        self.outstanding = None
        self.deadline = 0.0
        self.up_packets = self.up_bytes = self.down_packets = self.down_bytes = 0
        self.lost = 0
        self.send_errors = 0
        self.done = False
        self.awaiting = set()
        self.given_up = set()
        self.unexpected = 0

    def record(self):
        return {"src": self.src, "sport": self.sport, "dst": self.dst, "dport": self.dport,
                "family": 4 if self.family == socket.AF_INET else 6,
                "up_packets": self.up_packets, "up_bytes": self.up_bytes,
                "down_packets": self.down_packets, "down_bytes": self.down_bytes,
                "lost": self.lost, "send_errors": self.send_errors,
                "unexpected": self.unexpected}


def udp_client(args):
    raise_nofile()
    with open(args.plan) as f:
        plan = json.load(f)
    flows = []
    for i, spec in enumerate(plan):
        fam = family_of(spec["src"])
        dst = args.server4 if fam == socket.AF_INET else args.server6
        flows.append(Flow(spec, i, dst, int(spec.get("port", args.port))))
    pad = bytes(2048)
    sel = selectors.DefaultSelector()
    pending = list(reversed(flows))
    active = []
    t0 = time.monotonic()
    overhead = {socket.AF_INET: 28, socket.AF_INET6: 48}

    def send_next(fl):
        """Sends the flow's next request; marks it done when all were sent."""
        while fl.sent < fl.packets:
            i = fl.sent
            req = fl.reqs[i % len(fl.reqs)]
            rep = fl.replies[i % len(fl.replies)]
            seq = fl.next_seq
            msg = REQ_HDR.pack(rep, seq) + pad[:req - MIN_REQ]
            fl.sent += 1
            fl.next_seq += 1
            try:
                n = fl.sock.send(msg)
            except OSError as e:
                # Not sent: not counted. Transient errors are unlikely with one
                # datagram outstanding; record and move to the next packet.
                fl.send_errors += 1
                sys.stderr.write(f"udp-client: send from {fl.src}: {e}\n")
                continue
            assert n == len(msg)
            fl.up_packets += 1
            fl.up_bytes += req + overhead[fl.family]
            fl.outstanding = (seq, rep)
            fl.awaiting.add(seq)
            fl.deadline = time.monotonic() + args.timeout
            return
        fl.outstanding = None
        fl.done = True

    def start(fl):
        s = socket.socket(fl.family, socket.SOCK_DGRAM)
        if fl.family == socket.AF_INET6:
            s.bind((fl.src, 0, 0, 0))
        else:
            s.bind((fl.src, 0))
        s.connect((fl.dst, fl.dport))
        s.setblocking(False)
        fl.sock = s
        fl.sport = s.getsockname()[1]
        sel.register(s, selectors.EVENT_READ, fl)
        active.append(fl)
        send_next(fl)

    def on_readable(fl):
        while True:
            try:
                data = fl.sock.recv(65536)
            except BlockingIOError:
                return
            except ConnectionRefusedError:
                sys.stderr.write(f"udp-client: ICMP unreachable on flow from {fl.src}\n")
                continue
            if len(data) < MIN_REPLY:
                continue
            (seq,) = REP_HDR.unpack_from(data)
            fl.down_packets += 1
            fl.down_bytes += len(data) + overhead[fl.family]
            if seq in fl.awaiting:
                fl.awaiting.discard(seq)
            elif seq in fl.given_up:
                # A late reply to a request already given up on: it did arrive.
                fl.given_up.discard(seq)
                fl.lost -= 1
            else:
                fl.unexpected += 1
            if fl.outstanding is not None and fl.outstanding[0] == seq:
                gap = float(fl.spec.get("gap", args.gap))
                if gap > 0 and fl.sent < fl.packets:
                    fl.deadline = time.monotonic() + gap
                    fl.outstanding = ("gap", None)
                else:
                    send_next(fl)

    while pending or active:
        while pending and len(active) < args.window:
            start(pending.pop())
        now = time.monotonic()
        timeout = min((fl.deadline for fl in active if not fl.done), default=now + 0.05) - now
        for key, _ in sel.select(max(0.0, min(timeout, 0.5))):
            on_readable(key.data)
        now = time.monotonic()
        for fl in active:
            if fl.done or now < fl.deadline:
                continue
            if fl.outstanding is not None and fl.outstanding[0] != "gap":
                fl.awaiting.discard(fl.outstanding[0])
                fl.given_up.add(fl.outstanding[0])
                fl.lost += 1
            send_next(fl)
        still = []
        for fl in active:
            if fl.done:
                continue
            still.append(fl)
        active = still

    # Straggler replies to timed-out requests: give them one more timeout.
    waiting = [fl for fl in flows if fl.lost > 0]
    if waiting:
        end = time.monotonic() + args.timeout
        while time.monotonic() < end:
            for key, _ in sel.select(max(0.0, end - time.monotonic())):
                on_readable(key.data)
    for fl in flows:
        sel.unregister(fl.sock)
        fl.sock.close()

    subs = {}
    for fl in flows:
        s = subs.setdefault(fl.src, {"up_packets": 0, "up_bytes": 0, "down_packets": 0,
                                     "down_bytes": 0, "flows": 0})
        s["up_packets"] += fl.up_packets
        s["up_bytes"] += fl.up_bytes
        s["down_packets"] += fl.down_packets
        s["down_bytes"] += fl.down_bytes
        s["flows"] += 1
    out({"flows": [fl.record() for fl in flows], "subscribers": subs,
         "lost_replies": sum(fl.lost for fl in flows),
         "send_errors": sum(fl.send_errors for fl in flows),
         "elapsed": round(time.monotonic() - t0, 3)})
    return 0


# ----------------------------------------------------------------- TCP server

def tcp_conn(conn, peer):
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    hdr = b""
    try:
        while len(hdr) < TCP_HDR.size:
            chunk = conn.recv(TCP_HDR.size - len(hdr))
            if not chunk:
                conn.close()
                return
            hdr += chunk
        magic, rate, duration_ms = TCP_HDR.unpack(hdr)
        if magic != TCP_MAGIC:
            conn.close()
            return
        received = [0]

        def reader():
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                received[0] += len(data)

        rt = threading.Thread(target=reader, daemon=True)
        rt.start()
        sent = pace_send(conn, rate, duration_ms / 1000.0, 4096, None)
        conn.shutdown(socket.SHUT_WR)
        rt.join()
        conn.close()
        sys.stderr.write(f"tcp-server: {peer}: sent {sent} received {received[0]}\n")
    except OSError as e:
        sys.stderr.write(f"tcp-server: {peer}: {e}\n")
        conn.close()


def tcp_server(args):
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    l4 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    l6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    l6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    sel = selectors.DefaultSelector()
    for s, addr in ((l4, ("0.0.0.0", args.port)), (l6, ("::", args.port))):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(addr)
        s.listen(128)
        sel.register(s, selectors.EVENT_READ)
    out({"ready": True, "port": args.port})
    try:
        while True:
            for key, _ in sel.select():
                conn, peer = key.fileobj.accept()
                threading.Thread(target=tcp_conn, args=(conn, peer), daemon=True).start()
    except _Stop:
        pass
    return 0


# ----------------------------------------------------------------- TCP client

def pace_send(sock, rate, duration, chunk, progress, base=0):
    """Sends `rate` bytes/s for `duration` s as `chunk`-byte writes (chunk k is
    due at k * chunk / rate); returns bytes sent. If `progress` is a list,
    progress[0] is kept at base + bytes sent."""
    if rate <= 0 or duration <= 0:
        return 0
    buf = bytes(chunk)
    sent = 0
    t0 = time.monotonic()
    end = t0 + duration
    while True:
        due = t0 + sent / rate
        if due >= end:
            break
        now = time.monotonic()
        if now < due:
            time.sleep(due - now)  # pacing, not synchronisation
        sock.sendall(buf)
        sent += chunk
        if progress is not None:
            progress[0] = base + sent
    return sent


def tcp_client(args):
    fam = family_of(args.src)
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.bind((args.src, 0) if fam == socket.AF_INET else (args.src, 0, 0, 0))
    s.settimeout(10)
    s.connect((args.dst, args.port))
    s.settimeout(None)
    local = s.getsockname()
    out({"event": "connected", "src": args.src, "sport": local[1], "dst": args.dst,
         "dport": args.port, "family": 4 if fam == socket.AF_INET else 6})
    s.sendall(TCP_HDR.pack(TCP_MAGIC, int(args.down_rate), int(args.duration * 1000)))
    sent = [TCP_HDR.size]
    received = [0]

    def reader():
        while True:
            data = s.recv(65536)
            if not data:
                return
            received[0] += len(data)

    rt = threading.Thread(target=reader, daemon=True)
    rt.start()
    t0 = time.monotonic()
    stop_progress = threading.Event()

    def progress():
        while not stop_progress.wait(0.2):
            out({"event": "progress", "t": round(time.monotonic() - t0, 3),
                 "sent": sent[0], "received": received[0]})

    pt = threading.Thread(target=progress, daemon=True)
    pt.start()
    # pace_send keeps sent[0] current (header included) for the progress reports.
    sent[0] = TCP_HDR.size + pace_send(s, args.up_rate, args.duration, args.chunk, sent,
                                       base=TCP_HDR.size)
    s.shutdown(socket.SHUT_WR)
    rt.join()
    stop_progress.set()
    pt.join()
    s.close()
    out({"event": "done", "sent": sent[0], "received": received[0],
         "elapsed": round(time.monotonic() - t0, 3)})
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("udp-server")
    a.add_argument("--port", type=int, default=9000)
    a = sub.add_parser("udp-client")
    a.add_argument("--plan", required=True)
    a.add_argument("--server4", required=True)
    a.add_argument("--server6", required=True)
    a.add_argument("--port", type=int, default=9000)
    a.add_argument("--window", type=int, default=64)
    a.add_argument("--timeout", type=float, default=1.0)
    a.add_argument("--gap", type=float, default=0.0,
                   help="pause between a reply and the next request of a flow (rate limiting)")
    a = sub.add_parser("tcp-server")
    a.add_argument("--port", type=int, default=9100)
    a = sub.add_parser("tcp-client")
    a.add_argument("--src", required=True)
    a.add_argument("--dst", required=True)
    a.add_argument("--port", type=int, default=9100)
    a.add_argument("--up-rate", type=float, default=200_000)
    a.add_argument("--down-rate", type=float, default=50_000)
    a.add_argument("--duration", type=float, default=10.0)
    a.add_argument("--chunk", type=int, default=4096)
    args = p.parse_args()
    return {"udp-server": udp_server, "udp-client": udp_client,
            "tcp-server": tcp_server, "tcp-client": tcp_client}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
