#!/usr/bin/env python3
"""A webhook receiver for the tests: listens on 127.0.0.1:PORT (run it in the
daemon's namespace with ip netns exec), answers every POST with STATUS and
appends one JSON line per request to LOG: path, headers, body (text), and
the time it arrived. STATUS may also name a misbehaviour, each bounded to
30 s: "slow" (answers 200 after 30 s), "endless-headers" (a status line,
then header lines for ever), "endless-body" (200, then a chunked body for ever)."""

import http.server
import json
import sys
import time

HOSTILE_SECONDS = 30


def misbehave(handler, mode):
    """Keeps the connection busy the way `mode` says, until the client gives up."""
    end = time.monotonic() + HOSTILE_SECONDS
    try:
        if mode == "slow":
            time.sleep(HOSTILE_SECONDS)
            handler.send_response(200)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        if mode == "endless-headers":
            handler.wfile.write(b"HTTP/1.1 200 OK\r\n")
            line = b"X-Pad: " + b"a" * 1000 + b"\r\n"
        else:
            handler.wfile.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            line = b"3e8\r\n" + b"b" * 1000 + b"\r\n"
        while time.monotonic() < end:
            handler.wfile.write(line * 64)
    except OSError:
        pass  # the client closed: what it should do


def main():
    port, log_path = int(sys.argv[1]), sys.argv[2]
    status = sys.argv[3] if len(sys.argv) > 3 else "200"

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with open(log_path, "a") as f:
                f.write(json.dumps({"path": self.path,
                                    "headers": {k.lower(): v for k, v in self.headers.items()},
                                    "body": body.decode(), "at": time.time()}) + "\n")
            if not status.isdigit():
                misbehave(self, status)
                self.close_connection = True
                return
            self.send_response(int(status))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print("listening", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
