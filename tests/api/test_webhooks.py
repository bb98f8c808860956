#!/usr/bin/env python3
"""Webhooks end to end: a real ctquotad, a real PostgreSQL and a real HTTP
receiver on the daemon's loopback. Enforcement events are recorded with their
outbox rows in one transaction, as the policy engine does. The receiver is
down at first: attempts and last_error grow, with backoff. ctquotad restarts
in between: nothing is lost. The receiver comes up: every row is delivered
exactly once, with a valid X-Ctquota-Signature (t=<unix>,v1=HMAC of
"t.id.body", checked as a receiver would: within 5 minutes, for this delivery
id only), X-Ctquota-Delivery = outbox id and X-Ctquota-Event = kind. A row
naming a URL outside the config is never sent there. Then a receiver
answering 500 is retried, not marked delivered.

Run as root with CTQUOTA_TEST_DB_URL and CTQUOTA_BIN set (CTest does both).
"""

import hashlib
import hmac
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from api_harness import API_PORT, Db, check, run_in_world, sh, wait_for  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SECRET = "test-secret-\u00e9"  # non-ASCII on purpose: the key is its UTF-8 bytes
PORTS = (18461, 18462)
FOREIGN_PORT = 18463  # a receiver no config names
EVENTS = 5


class Receiver:
    """webhook_receiver.py in the daemon's namespace, ended by its PID."""

    def __init__(self, world, port, status=200):
        self.log = os.path.join(world.dir, f"receiver-{port}-{status}.jsonl")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", world.ns, sys.executable, os.path.join(HERE, "webhook_receiver.py"),
             str(port), self.log, str(status)], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "listening"

    def requests(self):
        try:
            with open(self.log) as f:
                return [json.loads(line) for line in f if line.strip()]
        except FileNotFoundError:
            return []

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


GATEWAY = "gw-api-test"  # api_harness's [accounting] gateway_id


def record_events(db, n, urls, tag, gateway=GATEWAY):
    """Events and their outbox rows in one transaction, shaped as the engine writes them."""
    url_array = "ARRAY[" + ",".join(f"'{u}'" for u in urls) + "]"
    db.exec(f"""
        BEGIN;
        INSERT INTO subscribers (external_id) SELECT '{tag}-' || g FROM generate_series(1, {n}) g;
        WITH ev AS (
            INSERT INTO enforcement_events (subscriber_id, kind, from_state, to_state, reason,
                                            counted_bytes, allowance_bytes)
            SELECT id, 'state', 'normal', 'throttled', '100% of 1.0 kB used: throttle tier', 1000, 1000
            FROM subscribers WHERE external_id LIKE '{tag}-%'
            RETURNING id, subscriber_id, at, kind, from_state, to_state, reason, counted_bytes,
                      allowance_bytes)
        INSERT INTO webhook_outbox (event_id, payload, url, gateway_id)
        SELECT ev.id, jsonb_build_object(
                   'event_id', ev.id, 'kind', ev.kind, 'subscriber_id', s.external_id,
                   'at', to_char(ev.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                   'from', ev.from_state, 'to', ev.to_state, 'reason', ev.reason,
                   'counted_bytes', ev.counted_bytes, 'allowance_bytes', ev.allowance_bytes),
               u.url, '{gateway}'
        FROM ev JOIN subscribers s ON s.id = ev.subscriber_id CROSS JOIN unnest({url_array}) AS u(url);
        COMMIT;""")


def outbox(db, where="true"):
    return db.query("SELECT id, attempts, coalesce(last_error, ''), delivered_at IS NOT NULL, url,"
                    f" payload::text, payload->>'kind' FROM webhook_outbox WHERE {where} ORDER BY id")


def signature_ok(req, delivery_id, tolerance=300):
    """What a receiver does (README): t within the tolerance, v1 = HMAC of t.id.body."""
    fields = dict(part.split("=", 1) for part in req["headers"]["x-ctquota-signature"].split(","))
    t = int(fields["t"])
    signed = f"{t}.{delivery_id}.".encode() + req["body"].encode()
    expected = hmac.new(SECRET.encode(), signed, hashlib.sha256).hexdigest()
    return abs(time.time() - t) <= tolerance and hmac.compare_digest(fields["v1"], expected)


def verify_deliveries(rows, requests, url):
    """Each row of `url` delivered exactly once, signed, with the right headers and body."""
    mine = [r for r in rows if r[4] == url]
    by_delivery = {}
    for req in requests:
        by_delivery.setdefault(req["headers"]["x-ctquota-delivery"], []).append(req)
    check(sorted(by_delivery) == sorted(r[0] for r in mine),
          f"deliveries {sorted(by_delivery)} != outbox rows {[r[0] for r in mine]}")
    for row_id, _attempts, _error, _delivered, _url, payload, kind in mine:
        reqs = by_delivery[row_id]
        check(len(reqs) == 1, f"row {row_id} delivered {len(reqs)} times")
        req = reqs[0]
        check(signature_ok(req, row_id), f"row {row_id}: bad signature {req['headers']['x-ctquota-signature']}")
        check(req["headers"]["x-ctquota-event"] == kind, f"row {row_id}: event header")
        check(req["headers"]["content-type"] == "application/json", f"row {row_id}: content type")
        check(json.loads(req["body"]) == json.loads(payload), f"row {row_id}: body differs")
        check(req["path"] == "/hook?src=ctquota", f"row {row_id}: path {req['path']}")
        doc = json.loads(req["body"])
        check(set(doc) == {"event_id", "kind", "subscriber_id", "at", "from", "to", "reason",
                           "counted_bytes", "allowance_bytes"}, f"payload keys {sorted(doc)}")


def metric(world, name):
    """A counter from the daemon's /metrics (curl inside its namespace)."""
    r = sh(["ip", "netns", "exec", world.ns, "curl", "-s", f"http://127.0.0.1:{API_PORT}/metrics"])
    for line in r.stdout.splitlines():
        if line.startswith(name + " "):
            return int(float(line.split()[1]))
    return None


def run(world):
    db = Db(world.url)
    urls = [f"http://127.0.0.1:{p}/hook?src=ctquota" for p in PORTS]
    world.stop()
    with open(world.config, "a") as f:
        f.write(f'[webhooks]\nurls = {json.dumps(urls)}\nsecret = "{SECRET}"\n'
                'timeout = "1s"\nmax_backoff = "2s"\n')
    world.start()

    # Receivers down: attempts and last_error grow.
    record_events(db, EVENTS, urls, "wh")
    rows = outbox(db)
    check(len(rows) == EVENTS * len(urls), f"{len(rows)} outbox rows")
    wait_for(lambda: all(int(r[1]) >= 2 for r in outbox(db)), timeout=20,
             what="two failed attempts per row")
    rows = outbox(db)
    check(all(r[2].startswith("cannot connect to http://127.0.0.1:") for r in rows),
          f"last_error: {rows[0][2]!r}")
    check(not any(r[3] == "t" for r in rows), "delivered while the receiver was down")
    print(f"receivers down: attempts {sorted({int(r[1]) for r in rows})}, last_error {rows[0][2]!r}")

    # Restart in between: nothing lost, attempts kept.
    before = {r[0]: int(r[1]) for r in rows}
    check(world.stop() == 0, "ctquotad did not stop cleanly")
    check(len(outbox(db)) == len(rows), "rows lost over the restart")
    receivers = [Receiver(world, p) for p in PORTS]
    try:
        started = time.monotonic()
        world.start()
        rows = wait_for(lambda: (lambda x: x if all(r[3] == "t" for r in x) else None)(outbox(db)),
                        timeout=20, what="every row delivered")
        print(f"receivers up: all {len(rows)} delivered {time.monotonic() - started:.1f} s after start")
        check(all(int(r[1]) > before[r[0]] for r in rows), "attempts went backwards")
        check(all(r[2] == "" for r in rows), "last_error kept after delivery")
        # New events are delivered promptly (commit notification, not the backoff).
        t0 = time.monotonic()
        record_events(db, 1, urls, "prompt")
        wait_for(lambda: all(r[3] == "t" for r in outbox(db)), timeout=5, what="a new event delivered")
        prompt = time.monotonic() - t0
        check(prompt < 1.5, f"a new event took {prompt:.2f} s")
        print(f"a new event is delivered in {prompt * 1000:.0f} ms")
        delivered = metric(world, "ctquota_webhooks_delivered_total")
        check(delivered == len(outbox(db)), f"/metrics says {delivered} delivered")
        time.sleep(2.5)  # longer than the backoff cap: a second delivery would have happened
        rows = outbox(db)
        for receiver, url in zip(receivers, urls):
            verify_deliveries(rows, receiver.requests(), url)
        receivers_log = receivers[0].requests()
        print(f"exactly once with valid signatures: {len(rows)} rows")
    finally:
        for r in receivers:
            r.stop()

    # A row naming a URL that is not in the config (written behind our back),
    # and a row for one of our receivers written by another gateway: never
    # claimed, never sent, whatever the rows say. A new row of ours, written
    # after them, is delivered (the sender is awake and looked).
    thief = Receiver(world, FOREIGN_PORT)
    ours = Receiver(world, PORTS[1])
    try:
        db.exec("DELETE FROM webhook_outbox")
        record_events(db, 1, [f"http://127.0.0.1:{FOREIGN_PORT}/steal"], "foreign")
        record_events(db, 1, urls[1:], "othergw", gateway="gw-elsewhere")
        record_events(db, 1, urls[1:], "after")
        def sent(tag):  # the receiver's log also holds the earlier receivers' requests on this port
            return [r for r in ours.requests() if json.loads(r["body"])["subscriber_id"].startswith(tag)]
        wait_for(lambda: len(sent("after-")) >= 1, timeout=10, what="our own row delivered")
        time.sleep(1.5)  # a few sender rounds (observation window, not synchronisation)
        rows = outbox(db)
        foreign = [r for r in rows if "steal" in r[4]]
        other = [r for r in rows if r[4] == urls[1] and r[3] == "f"]
        check(len(foreign) == 1 and foreign[0][1] == "0", f"foreign row claimed: {foreign}")
        check(len(other) == 1 and other[0][1] == "0", f"another gateway's row claimed: {other}")
        check(sent("othergw-") == [] and len(sent("after-")) == 1,
              f"another gateway's row was sent: {sent('othergw-')}")
        check(thief.requests() == [], f"sent to a URL outside the config: {thief.requests()}")
        # A captured delivery replayed under another id does not verify.
        good = receivers_log[0]
        check(not signature_ok(good, int(good["headers"]["x-ctquota-delivery"]) + 1),
              "a signature verified for another delivery id")
        check(not signature_ok(good, good["headers"]["x-ctquota-delivery"], tolerance=-1),
              "a signature verified outside the time tolerance")
        print("a foreign row is never sent; a replay under another id does not verify")
    finally:
        thief.stop()
        ours.stop()

    # A receiver answering 500: retried, never marked delivered.
    failing = Receiver(world, PORTS[0], status=500)
    try:
        db.exec("DELETE FROM webhook_outbox")
        record_events(db, 1, urls[:1], "err")
        wait_for(lambda: len(failing.requests()) >= 2, timeout=10, what="a retry after HTTP 500")
        rows = outbox(db)
        check(rows[0][3] == "f" and rows[0][2] == "answered HTTP 500", f"after 500: {rows[0]}")
        ids = {req["headers"]["x-ctquota-delivery"] for req in failing.requests()}
        check(ids == {rows[0][0]}, "a retry carries the same delivery id")
    finally:
        failing.stop()
    check(world.stop() == 0, "ctquotad did not stop cleanly")
    check("webhooks: stopped" in world.read_log(), "no webhook sender stop in the log")


if __name__ == "__main__":
    sys.exit(run_in_world("test_webhooks.py", run, log_lines=40))
