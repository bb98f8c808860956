"""Traffic tools run inside the lab's namespaces (python3 e2e_traffic.py MODE ...).

  udp-server PORT                  echo server: a request's first 4 bytes give the
                                   reply's payload size; prints "ready", runs until killed
  udp-client PLAN.json             sends the flows in PLAN, prints ground truth JSON
  tcp-server PORT                  sink: reads until EOF, answers 1 byte per 100 read
  tcp-client SRC DST PORT RATE SECONDS
                                   one paced connection; prints a JSON progress line
                                   per second and a final one

A UDP plan is a list of flows: {"src": addr, "dst": addr, "port": n,
"packets": n, "request": bytes, "reply": bytes}. Each flow is a fresh socket
(a fresh source port, so a fresh conntrack entry). Ground truth is counted at
the IP layer (payload + UDP + IP header) from what was actually sent and
actually received.
"""

import json
import select
import socket
import struct
import sys
import time


def family_of(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def overhead(addr):
    return 8 + (40 if ":" in addr else 20)


def udp_server(port):
    socks = []
    for fam, host in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        s = socket.socket(fam, socket.SOCK_DGRAM)
        if fam == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind((host, port))
        socks.append(s)
    print("ready", flush=True)
    while True:
        ready, _, _ = select.select(socks, [], [])
        for s in ready:
            data, peer = s.recvfrom(65535)
            size = struct.unpack("!I", data[:4])[0] if len(data) >= 4 else 0
            s.sendto(b"r" * size, peer)


def udp_client(plan):
    truth = {}
    lost = []
    for n, flow in enumerate(plan):
        src = flow["src"]
        t = truth.setdefault(src, {"up_bytes": 0, "up_packets": 0, "down_bytes": 0, "down_packets": 0})
        s = socket.socket(family_of(src), socket.SOCK_DGRAM)
        s.bind((src, 0))
        s.settimeout(1.0)
        payload = struct.pack("!I", flow["reply"]) + b"q" * max(0, flow["request"] - 4)
        for _ in range(flow["packets"]):
            s.sendto(payload, (flow["dst"], flow["port"]))
            t["up_bytes"] += len(payload) + overhead(src)
            t["up_packets"] += 1
            try:
                data = s.recv(65535)
                t["down_bytes"] += len(data) + overhead(src)
                t["down_packets"] += 1
            except socket.timeout:
                lost.append({"flow": n, **flow})
        s.close()
    print(json.dumps({"truth": truth, "lost_replies": lost}))


def serve_connection(conn):
    total = 0
    while True:
        data = conn.recv(65536)
        if not data:
            break
        before = total // 100
        total += len(data)
        if total // 100 > before:
            conn.sendall(b"a" * (total // 100 - before))
    conn.close()


def tcp_server(port):
    listeners = []
    for fam, host in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        srv = socket.socket(fam, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if fam == socket.AF_INET6:
            srv.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        srv.bind((host, port))
        srv.listen(16)
        listeners.append(srv)
    print("ready", flush=True)
    while True:
        ready, _, _ = select.select(listeners, [], [])
        for srv in ready:
            conn, _ = srv.accept()
            serve_connection(conn)


def tcp_client(src, dst, port, rate, seconds):
    s = socket.socket(family_of(src), socket.SOCK_STREAM)
    s.bind((src, 0))
    s.connect((dst, port))
    sport = s.getsockname()[1]
    chunk = b"d" * 4096
    sent = 0
    start = time.monotonic()
    next_report = start + 1
    while time.monotonic() - start < seconds:
        s.sendall(chunk)
        sent += len(chunk)
        now = time.monotonic()
        if now >= next_report:
            print(json.dumps({"sport": sport, "sent": sent, "t": now}), flush=True)
            next_report += 1
        due = start + sent / rate
        if due > now:
            time.sleep(due - now)  # pacing, not synchronisation
    s.shutdown(socket.SHUT_WR)
    while s.recv(65536):
        pass
    s.close()
    print(json.dumps({"sport": sport, "sent": sent, "done": True}), flush=True)


def main():
    mode = sys.argv[1]
    if mode == "udp-server":
        udp_server(int(sys.argv[2]))
    elif mode == "udp-client":
        with open(sys.argv[2]) as f:
            udp_client(json.load(f))
    elif mode == "tcp-server":
        tcp_server(int(sys.argv[2]))
    elif mode == "tcp-client":
        tcp_client(sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6]))
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
