"""Hostile HTTP clients for the attack suite (test_attack.py). Each mode runs
inside the daemon's network namespace against 127.0.0.1, is bounded in
connections and time, stops by itself and prints one JSON object.

    attack_clients.py slowloris N SECONDS PORT    N connections each sending a
                                                  header byte per second
    attack_clients.py idle N SECONDS PORT         N connections sending nothing
    attack_clients.py bigheader MBYTES PORT       one header line of MBYTES MB
    attack_clients.py manyheaders N PORT          one request with N headers
    attack_clients.py smuggle PORT                pipelined smuggling attempts
    attack_clients.py one_address N PORT          N connections from one address
    attack_clients.py billing TOKEN ID SECONDS PORT
                                                  the legitimate client: keep-alive
                                                  GETs every 20 ms, latencies

Attack connections come from many loopback addresses (127.1.x.y: all of
127/8 is local), so the total cap is exercised, not just the per-address one;
the billing client uses 127.0.0.1.
"""

import errno
import http.client
import json
import re
import resource
import select
import selectors
import socket
import sys
import time

HOST = "127.0.0.1"


def raise_fd_limit(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, n + 64)), hard))


def source(i):
    return f"127.1.{(i // 200) % 250}.{1 + i % 200}"


def open_many(n, port, deadline, one_source=None):
    """Non-blocking connects from many addresses (or one); returns the sockets that connected."""
    sel = selectors.DefaultSelector()
    pending = 0
    for i in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.bind((one_source or source(i), 0))
        err = s.connect_ex((HOST, port))
        if err not in (0, errno.EINPROGRESS):
            s.close()
            continue
        sel.register(s, selectors.EVENT_WRITE)
        pending += 1
    connected = []
    while pending and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.2):
            s = key.fileobj
            sel.unregister(s)
            pending -= 1
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                connected.append(s)
            else:
                s.close()
    for key in list(sel.get_map().values()):
        key.fileobj.close()
    sel.close()
    return connected


def is_closed(s):
    """True once the server closed (EOF or reset); data is read and dropped."""
    try:
        data = s.recv(65536)
        return data == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def hold(mode, n, seconds, port):
    """slowloris / idle: opens n connections, feeds them (or not) and watches
    when the server closes each; reports how long the longest one lived."""
    raise_fd_limit(n)
    start = time.monotonic()
    end = start + seconds
    socks = open_many(n, port, start + 10)
    opened = {s: time.monotonic() for s in socks}
    if mode == "slowloris":
        for s in socks:
            try:
                s.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            except OSError:
                pass
    lifetimes = []
    last_feed = time.monotonic()
    while opened and time.monotonic() < end:
        time.sleep(0.1)
        feed = mode == "slowloris" and time.monotonic() - last_feed >= 1.0
        for s in list(opened):
            if is_closed(s):
                lifetimes.append(time.monotonic() - opened.pop(s))
                s.close()
            elif feed:
                try:
                    s.send(b"X")
                except OSError:
                    pass
        if feed:
            last_feed = time.monotonic()
    still_open = len(opened)
    for s in opened:
        s.close()
    return {"mode": mode, "asked": n, "connected": len(socks), "closed_by_server": len(lifetimes),
            "still_open_at_end": still_open, "max_lifetime_s": round(max(lifetimes, default=0), 2),
            "seconds": round(time.monotonic() - start, 2)}


def one_address(n, port):
    """n connections from one address: how many the server refuses at once (503)."""
    raise_fd_limit(n)
    socks = open_many(n, port, time.monotonic() + 10, one_source="127.2.0.1")
    time.sleep(1.0)  # let refusals arrive; then look
    refused = 0
    for s in socks:
        try:
            if s.recv(4096).startswith(b"HTTP/1.1 503"):
                refused += 1
        except OSError:
            pass
        s.close()
    return {"mode": "one_address", "connected": len(socks), "refused_503": refused}


def read_status(s, timeout):
    s.settimeout(timeout)
    data = b""
    try:
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    line = data.split(b"\r\n", 1)[0].decode(errors="replace")
    return line, data


def bigheader(mbytes, port):
    """One endless header line: how much the server reads before it answers."""
    s = socket.create_connection((HOST, port), timeout=10)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
    s.setblocking(False)
    chunk = b"a" * 65536
    total, limit = 0, mbytes << 20
    deadline = time.monotonic() + 20
    answered = False
    status = ""
    while total < limit and time.monotonic() < deadline:
        try:
            total += s.send(chunk)
        except BlockingIOError:
            r, _, _ = select.select([s], [s], [], 0.5)
            if s in r:
                answered = True
                break
        except OSError:
            break
    s.setblocking(True)
    status, _ = read_status(s, 5)
    s.close()
    return {"mode": "bigheader", "sent_bytes": total, "answered_while_sending": answered,
            "status_line": status}


def manyheaders(n, port):
    s = socket.create_connection((HOST, port), timeout=10)
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(
        f"X-H{i}: v\r\n".encode() for i in range(n)) + b"\r\n"
    try:
        s.sendall(head)
    except OSError:
        pass
    status, _ = read_status(s, 5)
    s.close()
    return {"mode": "manyheaders", "headers": n, "bytes": len(head), "status_line": status}


def responses(data):
    """Status lines; a pipelined answer's starts right after the body before it."""
    return [m.decode(errors="replace") for m in re.findall(rb"HTTP/1\.1 \d{3}[^\r\n]*", data)]


def exchange(payload, port, wait=3.0):
    """Sends `payload` on one connection; every status line until the server closes."""
    s = socket.create_connection((HOST, port), timeout=wait)
    s.sendall(payload)
    data = b""
    closed = False
    deadline = time.monotonic() + wait
    timed_out = False
    try:
        while time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                closed = True
                break
            data += chunk
    except socket.timeout:
        timed_out = True
    except OSError:
        closed = True  # reset
    s.close()
    return {"statuses": responses(data), "closed": closed, "timed_out": timed_out,
            "seconds": round(wait - (deadline - time.monotonic()), 3)}


SMUGGLED = b"GET /api/v1/subscribers HTTP/1.1\r\nHost: x\r\n\r\n"
ATTEMPTS = {
    # The body of a GET would be the next request if the server did not read it.
    "get_with_body": b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                     % len(SMUGGLED) + SMUGGLED,
    "head_with_body": b"HEAD /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                      % len(SMUGGLED) + SMUGGLED,
    "get_chunked": b"GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"0\r\n\r\n" + SMUGGLED,
    # CL.TE / TE.CL: a proxy and the server disagreeing on where the body ends.
    "cl_and_te": b"POST /api/v1/subscribers HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "two_lengths": b"POST /api/v1/subscribers HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                   b"Content-Length: 50\r\n\r\nhello" + SMUGGLED,
    "te_not_chunked": b"POST /api/v1/subscribers HTTP/1.1\r\nHost: x\r\n"
                      b"Transfer-Encoding: gzip\r\n\r\nxxxx" + SMUGGLED,
    # Ordinary pipelining still works: two answers, in order.
    "pipelined_ok": b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                    b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
}


def smuggle(port):
    return {"mode": "smuggle", "results": {name: exchange(payload, port)
                                           for name, payload in ATTEMPTS.items()}}


def billing(token, sub_id, seconds, port):
    """A billing system: one keep-alive connection, a GET every 20 ms; a
    request that fails on a connection the server closed is retried once on
    a new one, and its latency counts both attempts."""
    latencies, failures, reconnects = [], [], 0
    conn = None
    end = time.monotonic() + seconds
    headers = {"Authorization": f"Bearer {token}"}
    while time.monotonic() < end:
        started = time.monotonic()
        status = None
        for attempt in range(2):
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(HOST, port, timeout=5)
                    if attempt:
                        reconnects += 1
                conn.request("GET", f"/api/v1/subscribers/{sub_id}", headers=headers)
                r = conn.getresponse()
                r.read()
                status = r.status
                break
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                conn = None
                status = repr(e)
        took = time.monotonic() - started
        if status == 200:
            latencies.append(took)
        else:
            failures.append(str(status))
        time.sleep(max(0.0, 0.02 - took))
    latencies.sort()

    def pct(p):
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 2) \
            if latencies else None
    return {"mode": "billing", "ok": len(latencies), "failures": failures[:10],
            "failed": len(failures), "reconnects": reconnects, "p50_ms": pct(0.5),
            "p99_ms": pct(0.99), "max_ms": pct(1.0)}


def main(argv):
    mode = argv[1]
    if mode in ("slowloris", "idle"):
        out = hold(mode, int(argv[2]), float(argv[3]), int(argv[4]))
    elif mode == "bigheader":
        out = bigheader(int(argv[2]), int(argv[3]))
    elif mode == "manyheaders":
        out = manyheaders(int(argv[2]), int(argv[3]))
    elif mode == "one_address":
        out = one_address(int(argv[2]), int(argv[3]))
    elif mode == "smuggle":
        out = smuggle(int(argv[2]))
    elif mode == "billing":
        out = billing(argv[2], argv[3], float(argv[4]), int(argv[5]))
    else:
        raise SystemExit(f"unknown mode {mode}")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
