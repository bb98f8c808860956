#!/usr/bin/env python3
"""Forwards TCP connections from the host's loopback into a network namespace.

    python3 tests/netns/nsforward.py --listen 127.0.0.1:8460 --netns ctqdemo-gw \
        --to 127.0.0.1:8460

The demo's ctquotad serves its API and web page on the loopback of the
gateway namespace; this lets a browser on the host reach them without adding
any interface or route to the host. The listening socket is opened in the
host namespace, then the process joins the target namespace (setns), so every
outgoing connection is made there. Prints {"ready": true} once listening.
Stops on SIGTERM/SIGINT.
"""

import argparse
import ctypes
import json
import os
import selectors
import signal
import socket
import sys
import threading

CLONE_NEWNET = 0x40000000


def join_netns(name):
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns into {name}: {os.strerror(err)}")
    finally:
        os.close(fd)


def host_port(text):
    host, _, port = text.rpartition(":")
    return host, int(port)


def pipe(client, target):
    """Copies both ways until either side closes."""
    sel = selectors.DefaultSelector()
    peers = {client: target, target: client}
    for s in peers:
        sel.register(s, selectors.EVENT_READ)
    try:
        while True:
            for key, _ in sel.select():
                data = key.fileobj.recv(65536)
                if not data:
                    return
                peers[key.fileobj].sendall(data)
    except OSError:
        return
    finally:
        client.close()
        target.close()


def serve(listener, to):
    while True:
        client, _ = listener.accept()
        try:
            target = socket.create_connection(to, timeout=5)
            target.settimeout(None)
        except OSError:
            client.close()
            continue
        threading.Thread(target=pipe, args=(client, target), daemon=True).start()


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--listen", required=True, type=host_port)
    ap.add_argument("--netns", required=True)
    ap.add_argument("--to", required=True, type=host_port)
    a = ap.parse_args()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(a.listen)
    listener.listen(64)
    join_netns(a.netns)  # single-threaded here: threads started later inherit it
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: sys.exit(0))
    print(json.dumps({"ready": True}), flush=True)
    serve(listener, a.to)


if __name__ == "__main__":
    sys.exit(main())
