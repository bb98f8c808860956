#!/usr/bin/env python3
"""A PostgreSQL pass-through proxy on a unix socket, for the fault campaign:
it can cut the connection of a flush between its COMMIT and the answer, so
that the daemon cannot know whether the flush committed (an in-doubt COMMIT).

    cutting_proxy.py LISTEN_SOCKET UPSTREAM_SOCKET [--refuse SECONDS]

Prints "ready" once listening. SIGUSR1 arms it: the next COMMIT of a
transaction that wrote gateway_flush (the flusher's) is forwarded to the
server, its answer is not: both sides are closed and "cut" is printed; for
the next --refuse seconds new connections are closed at once, so the daemon
cannot ask at once whether the flush committed either. Unix sockets only:
no traffic crosses a network namespace.
"""

import argparse
import os
import signal
import socket
import struct
import sys
import threading
import time

state = {"armed": False, "refuse_until": 0.0}
lock = threading.Lock()


def say(line):
    with lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def read_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def close_both(*socks):
    for s in socks:
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()


def server_to_client(server, client, conn):
    try:
        while True:
            data = server.recv(65536)
            if not data or conn["cut"]:
                break  # a cut connection's answers never reach the client
            client.sendall(data)
    except OSError:
        pass
    close_both(server, client)


def client_to_server(client, server, conn):
    """Forwards message by message, watching for the flusher's COMMIT."""
    try:
        (length,) = struct.unpack("!I", read_exact(client, 4))  # startup packet: no type byte
        server.sendall(struct.pack("!I", length) + read_exact(client, length - 4))
        wrote_flush = False
        while True:
            kind = read_exact(client, 1)
            (length,) = struct.unpack("!I", read_exact(client, 4))
            body = read_exact(client, length - 4)
            wrote_flush = wrote_flush or b"gateway_flush" in body
            ends = kind == b"Q" and body[:6].upper() in (b"COMMIT", b"ROLLBA")
            with lock:
                cut = ends and state["armed"] and wrote_flush and body[:6].upper() == b"COMMIT"
                if cut:
                    state["armed"] = False
                    state["refuse_until"] = time.monotonic() + args.refuse
                    conn["cut"] = True  # before the COMMIT goes: its answer is dropped
            server.sendall(kind + struct.pack("!I", length) + body)
            if cut:
                time.sleep(0.2)  # the server commits meanwhile
                close_both(client, server)
                say("cut")
                return
            wrote_flush = wrote_flush and not ends
    except (OSError, ConnectionError):
        pass
    close_both(client, server)


def serve(listener):
    while True:
        client, _ = listener.accept()
        with lock:
            refusing = time.monotonic() < state["refuse_until"]
        if refusing:
            client.close()
            continue
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            server.connect(args.upstream)
        except OSError:
            close_both(client, server)  # the server is down: so is the proxy's answer
            continue
        conn = {"cut": False}
        threading.Thread(target=server_to_client, args=(server, client, conn), daemon=True).start()
        threading.Thread(target=client_to_server, args=(client, server, conn), daemon=True).start()


def arm(_sig, _frame):
    with lock:
        state["armed"] = True


def main():
    global args
    ap = argparse.ArgumentParser()
    ap.add_argument("listen")
    ap.add_argument("upstream")
    ap.add_argument("--refuse", type=float, default=3.0)
    args = ap.parse_args()
    signal.signal(signal.SIGUSR1, arm)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    try:
        os.unlink(args.listen)
    except FileNotFoundError:
        pass
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(args.listen)
    os.chmod(args.listen, 0o777)
    listener.listen(64)
    say("ready")
    serve(listener)


if __name__ == "__main__":
    main()
