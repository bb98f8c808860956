#!/usr/bin/env python3
"""Webhook receivers that misbehave next to one that does not: delivery is
per receiver, with one deadline per delivery and a bounded read of the
answer. Receivers (webhook_receiver.py, in the daemon's namespace): one
that answers after 30 s, one that streams header lines for ever, one that
answers 200 and then streams a body for ever, and a healthy one; the
delivery deadline ([webhooks] timeout) is 2 s.

Required: the healthy receiver gets every event within 1.5 s of its commit
(serially behind the slow one it would take 2 s a row); the endless body
counts as delivered (the status is all that is read); the slow receiver's
rows fail with the deadline named, the endless headers' with their size,
each attempt ending within the deadline (+1 s); the daemon's RSS grows by
less than 32 MiB while they stream (256 MiB sanitized). Root, CTQUOTA_TEST_DB_URL and
CTQUOTA_BIN (CTest sets both); ~15 s.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from api_harness import Db, check, run_in_world, wait_for  # noqa: E402
from test_webhooks import Receiver, outbox, record_events  # noqa: E402

MODES = {"slow": 18471, "endless-headers": 18472, "endless-body": 18473, "200": 18474}
DEADLINE_S = 2
EVENTS = 4
# ASan's quarantine keeps freed memory: the sanitized build gets more room.
RSS_GROWTH_MIB = float(os.environ.get("CTQUOTA_RSS_GROWTH_MIB", "32"))


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def daemon_pid(world):
    # ip netns exec execs the daemon: the Popen's pid is the daemon's.
    return world.proc.pid


def run(world):
    db = Db(world.url)
    urls = {mode: f"http://127.0.0.1:{port}/hook" for mode, port in MODES.items()}
    world.stop()
    with open(world.config, "a") as f:
        f.write(f'[webhooks]\nurls = {list(urls.values())!r}\nsecret = "s"\n'.replace("'", '"') +
                f'timeout = "{DEADLINE_S}s"\nmax_backoff = "2s"\n')
    world.start()
    receivers = {mode: Receiver(world, port, status=mode) for mode, port in MODES.items()}
    try:
        rss_before = rss_kib(daemon_pid(world))
        t0 = time.monotonic()
        record_events(db, EVENTS, list(urls.values()), "rcv")

        def delivered(mode):
            return [r for r in outbox(db, f"url = '{urls[mode]}'") if r[3] == "t"]
        wait_for(lambda: len(delivered("200")) == EVENTS, timeout=10, what="the healthy receiver's rows")
        healthy = time.monotonic() - t0
        check(healthy < 1.5, f"the healthy receiver waited {healthy:.2f} s behind the others")
        wait_for(lambda: len(delivered("endless-body")) == EVENTS, timeout=10,
                 what="the endless body's rows (status read, body not)")
        wait_for(lambda: all(int(r[1]) >= 2 for mode in ("slow", "endless-headers")
                             for r in outbox(db, f"url = '{urls[mode]}'")),
                 timeout=20, what="two attempts at each hostile receiver's rows")
        rss_growth = (rss_kib(daemon_pid(world)) - rss_before) / 1024
        slow = outbox(db, f"url = '{urls['slow']}'")
        check(all(r[3] == "f" and f"within the deadline of {DEADLINE_S * 1000} ms" in r[2] for r in slow),
              f"slow receiver: {slow[0]}")
        endless = outbox(db, f"url = '{urls['endless-headers']}'")
        check(all(r[3] == "f" and r[2].startswith("headers too large from") for r in endless),
              f"endless headers: {endless[0]}")
        check(rss_growth < RSS_GROWTH_MIB, f"RSS grew by {rss_growth:.0f} MiB while receivers streamed")
        # Each attempt at the slow receiver ended by the deadline: the requests
        # it saw come one per attempt, never more than one at a time per row.
        arrivals = sorted(r["at"] for r in receivers["slow"].requests())
        gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
        check(gaps and max(gaps) < DEADLINE_S + 1 + 2.5,  # deadline + slack + the 2 s backoff cap
              f"slow receiver's attempts: gaps {gaps}")
        print(f"healthy receiver: {EVENTS} events in {healthy * 1000:.0f} ms; endless body delivered; "
              f"slow: {slow[0][2]!r}; endless headers: {endless[0][2][:60]!r}; "
              f"RSS growth {rss_growth:.1f} MiB")
    finally:
        for r in receivers.values():
            r.stop()
    check(world.stop() == 0, "ctquotad did not stop cleanly")


if __name__ == "__main__":
    sys.exit(run_in_world("test_webhook_receivers.py", run, log_lines=40))
