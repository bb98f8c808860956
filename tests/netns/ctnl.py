#!/usr/bin/env python3
"""Minimal ctnetlink client (python3 stdlib only): the tests' reference view
of the kernel's conntrack table, independent of ctquotad and of conntrack-tools.

Run it inside the namespace whose table you want (ip netns exec GW ...):

    ctnl.py events [--new] [--update] [--no-destroy] [--rcvbuf BYTES]
        Subscribes to conntrack events (DESTROY by default) with a large,
        forced receive buffer and prints one JSON object per event on stdout.
        The first line is {"ready": true, "rcvbuf": N} once subscribed. A lost
        burst (ENOBUFS) prints {"enobufs": COUNT}: whoever reads this must
        treat the capture as incomplete. SIGTERM/SIGINT end it cleanly.

    ctnl.py listeners
        The conntrack event sockets of this namespace (sock_diag): one JSON
        object per NETLINK_NETFILTER socket subscribed to a group, then
        {"done": true}: {"portid": int, "inode": int, "groups": [int],
        "broadcast_error": bool, "no_enobufs": bool} -- the last two are the
        reliable delivery options (NETLINK_BROADCAST_ERROR, NETLINK_NO_ENOBUFS).

    ctnl.py dump
        One table dump: a JSON object per entry, then {"done": true,
        "entries": N, "interrupted": bool}. A dump also makes the kernel
        destroy the expired entries it walks over, so dumping is the way to
        get prompt DESTROY events after flows expire.

Entry/event objects:
    {"kind": "destroy"|"new"|"update"|"dump", "id": int, "family": 4|6,
     "proto": int,
     "orig":  {"src": str, "dst": str, "sport": int, "dport": int},
     "reply": {"src": str, "dst": str, "sport": int, "dport": int},
     "orig_packets": int, "orig_bytes": int,
     "reply_packets": int, "reply_bytes": int,
     "start": ns or null, "stop": ns or null,
     "status": int, "mark": int, "zone": int}
Counters are absent (null) when the kernel sent none (accounting off).
"""

import errno
import ipaddress
import json
import os
import signal
import socket
import struct
import sys

NETLINK_NETFILTER = 12
SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
SO_RCVBUFFORCE = 33

NFNLGRP_CONNTRACK_NEW = 1
NFNLGRP_CONNTRACK_UPDATE = 2
NFNLGRP_CONNTRACK_DESTROY = 3

NFNL_SUBSYS_CTNETLINK = 1
IPCTNL_MSG_CT_NEW = 0
IPCTNL_MSG_CT_GET = 1
IPCTNL_MSG_CT_DELETE = 2

NLMSG_ERROR = 2
NLMSG_DONE = 3
NLMSG_OVERRUN = 4
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_DUMP_INTR = 0x10
NLM_F_CREATE = 0x400
NLM_F_EXCL = 0x200
NLM_F_DUMP = 0x300

NLA_TYPE_MASK = 0x3FFF

CTA_TUPLE_ORIG = 1
CTA_TUPLE_REPLY = 2
CTA_STATUS = 3
CTA_MARK = 8
CTA_COUNTERS_ORIG = 9
CTA_COUNTERS_REPLY = 10
CTA_ID = 12
CTA_ZONE = 18
CTA_TIMESTAMP = 20

CTA_TUPLE_IP = 1
CTA_TUPLE_PROTO = 2
CTA_IP_V4_SRC = 1
CTA_IP_V4_DST = 2
CTA_IP_V6_SRC = 3
CTA_IP_V6_DST = 4
CTA_PROTO_NUM = 1
CTA_PROTO_SRC_PORT = 2
CTA_PROTO_DST_PORT = 3
CTA_COUNTERS_PACKETS = 1
CTA_COUNTERS_BYTES = 2
CTA_COUNTERS32_PACKETS = 3
CTA_COUNTERS32_BYTES = 4
CTA_TIMESTAMP_START = 1
CTA_TIMESTAMP_STOP = 2

NLMSGHDR = struct.Struct("=IHHII")
NFGENMSG = struct.Struct("=BBH")
NLATTR = struct.Struct("=HH")


def parse_attrs(buf, off, end):
    """Returns {type: bytes} for the attributes in buf[off:end]."""
    attrs = {}
    while off + 4 <= end:
        alen, atype = NLATTR.unpack_from(buf, off)
        if alen < 4 or off + alen > end:
            break
        attrs[atype & NLA_TYPE_MASK] = bytes(buf[off + 4:off + alen])
        off += (alen + 3) & ~3
    return attrs


def nested(data):
    return parse_attrs(data, 0, len(data))


def be_uint(data):
    return int.from_bytes(data, "big")


def parse_tuple(data):
    t = nested(data)
    ip = nested(t.get(CTA_TUPLE_IP, b""))
    proto = nested(t.get(CTA_TUPLE_PROTO, b""))
    out = {}
    if CTA_IP_V4_SRC in ip:
        out["family"] = 4
        out["src"] = str(ipaddress.IPv4Address(ip[CTA_IP_V4_SRC]))
        out["dst"] = str(ipaddress.IPv4Address(ip[CTA_IP_V4_DST]))
    elif CTA_IP_V6_SRC in ip:
        out["family"] = 6
        out["src"] = str(ipaddress.IPv6Address(ip[CTA_IP_V6_SRC]))
        out["dst"] = str(ipaddress.IPv6Address(ip[CTA_IP_V6_DST]))
    out["proto"] = proto[CTA_PROTO_NUM][0] if CTA_PROTO_NUM in proto else None
    out["sport"] = be_uint(proto[CTA_PROTO_SRC_PORT]) if CTA_PROTO_SRC_PORT in proto else 0
    out["dport"] = be_uint(proto[CTA_PROTO_DST_PORT]) if CTA_PROTO_DST_PORT in proto else 0
    return out


def parse_counters(data):
    c = nested(data)
    packets = c.get(CTA_COUNTERS_PACKETS, c.get(CTA_COUNTERS32_PACKETS))
    nbytes = c.get(CTA_COUNTERS_BYTES, c.get(CTA_COUNTERS32_BYTES))
    return (be_uint(packets) if packets is not None else None,
            be_uint(nbytes) if nbytes is not None else None)


def parse_conntrack(kind, payload):
    a = parse_attrs(payload, NFGENMSG.size, len(payload))
    orig = parse_tuple(a[CTA_TUPLE_ORIG]) if CTA_TUPLE_ORIG in a else {}
    reply = parse_tuple(a[CTA_TUPLE_REPLY]) if CTA_TUPLE_REPLY in a else {}
    op, ob = parse_counters(a[CTA_COUNTERS_ORIG]) if CTA_COUNTERS_ORIG in a else (None, None)
    rp, rb = parse_counters(a[CTA_COUNTERS_REPLY]) if CTA_COUNTERS_REPLY in a else (None, None)
    ts = nested(a[CTA_TIMESTAMP]) if CTA_TIMESTAMP in a else {}
    return {
        "kind": kind,
        "id": be_uint(a[CTA_ID]) if CTA_ID in a else None,
        "family": orig.get("family"),
        "proto": orig.get("proto"),
        "orig": {k: orig.get(k) for k in ("src", "dst", "sport", "dport")},
        "reply": {k: reply.get(k) for k in ("src", "dst", "sport", "dport")},
        "orig_packets": op, "orig_bytes": ob,
        "reply_packets": rp, "reply_bytes": rb,
        "start": be_uint(ts[CTA_TIMESTAMP_START]) if CTA_TIMESTAMP_START in ts else None,
        "stop": be_uint(ts[CTA_TIMESTAMP_STOP]) if CTA_TIMESTAMP_STOP in ts else None,
        "status": be_uint(a[CTA_STATUS]) if CTA_STATUS in a else 0,
        "mark": be_uint(a[CTA_MARK]) if CTA_MARK in a else 0,
        "zone": be_uint(a[CTA_ZONE]) if CTA_ZONE in a else 0,
    }


def iter_messages(buf, n):
    """Yields (type, flags, payload memoryview) for each netlink message in buf[:n]."""
    off = 0
    mv = memoryview(buf)
    while off + NLMSGHDR.size <= n:
        mlen, mtype, mflags, _seq, _pid = NLMSGHDR.unpack_from(buf, off)
        if mlen < NLMSGHDR.size or off + mlen > n:
            break
        yield mtype, mflags, mv[off + NLMSGHDR.size:off + mlen]
        off += (mlen + 3) & ~3


def kind_of(mtype, mflags):
    if (mtype >> 8) != NFNL_SUBSYS_CTNETLINK:
        return None
    msg = mtype & 0xFF
    if msg == IPCTNL_MSG_CT_DELETE:
        return "destroy"
    if msg == IPCTNL_MSG_CT_NEW:
        return "new" if mflags & (NLM_F_CREATE | NLM_F_EXCL) else "update"
    return None


def emit(obj):
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")


class _Stop(Exception):
    pass


def _raise_stop(_sig, _frm):
    raise _Stop()


def cmd_events(args):
    groups = []
    if "--no-destroy" not in args:
        groups.append(NFNLGRP_CONNTRACK_DESTROY)
    if "--new" in args:
        groups.append(NFNLGRP_CONNTRACK_NEW)
    if "--update" in args:
        groups.append(NFNLGRP_CONNTRACK_UPDATE)
    rcvbuf = 64 << 20
    if "--rcvbuf" in args:
        rcvbuf = int(args[args.index("--rcvbuf") + 1])
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
    except PermissionError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.bind((0, 0))
    for g in groups:
        sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, g)
    got = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    emit({"ready": True, "rcvbuf": got, "groups": groups})
    sys.stdout.flush()
    buf = bytearray(1 << 20)
    enobufs = 0
    try:
        while True:
            try:
                n = sock.recv_into(buf)
            except OSError as e:
                if e.errno == errno.ENOBUFS:
                    enobufs += 1
                    emit({"enobufs": enobufs})
                    sys.stdout.flush()
                    continue
                if e.errno == errno.EINTR:
                    continue
                raise
            for mtype, mflags, payload in iter_messages(buf, n):
                kind = kind_of(mtype, mflags)
                if kind is not None:
                    emit(parse_conntrack(kind, payload))
            sys.stdout.flush()
    except (_Stop, BrokenPipeError):
        pass
    finally:
        try:
            emit({"end": True, "enobufs": enobufs})
            sys.stdout.flush()
        except BrokenPipeError:
            pass
    return 0


def dump_table():
    """One full dump of this namespace's table; returns (entries, interrupted)."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 8 << 20)
    except PermissionError:
        pass
    sock.bind((0, 0))
    seq = 1
    body = NFGENMSG.pack(socket.AF_UNSPEC, 0, 0)
    hdr = NLMSGHDR.pack(NLMSGHDR.size + len(body), (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET,
                        NLM_F_REQUEST | NLM_F_DUMP, seq, 0)
    sock.send(hdr + body)
    buf = bytearray(1 << 20)
    entries = []
    interrupted = False
    try:
        while True:
            n = sock.recv_into(buf)
            for mtype, mflags, payload in iter_messages(buf, n):
                if mflags & NLM_F_DUMP_INTR:
                    interrupted = True
                if mtype == NLMSG_DONE:
                    return entries, interrupted
                if mtype == NLMSG_ERROR:
                    err = -struct.unpack_from("=i", payload, 0)[0]
                    if err == 0:
                        continue
                    raise OSError(err, "conntrack dump: " + os.strerror(err))
                if (mtype >> 8) == NFNL_SUBSYS_CTNETLINK:
                    entries.append(parse_conntrack("dump", payload))
    finally:
        sock.close()


# sock_diag of netlink sockets (linux/sock_diag.h, linux/netlink_diag.h)
NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NETLINK_DIAG_REQ = struct.Struct("=BBHII8s")
NETLINK_DIAG_MSG = struct.Struct("=BBBBIIII8s")
NDIAG_SHOW_GROUPS = 0x2
NDIAG_SHOW_FLAGS = 0x8
NETLINK_DIAG_GROUPS = 1
NETLINK_DIAG_FLAGS = 4
NDIAG_FLAG_BROADCAST_ERROR = 0x4
NDIAG_FLAG_NO_ENOBUFS = 0x8


def event_listeners():
    """This namespace's NETLINK_NETFILTER sockets that joined a multicast
    group (the kernel lists a socket once bound and once as a member: one
    entry per inode here)."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG)
    req = NETLINK_DIAG_REQ.pack(socket.AF_NETLINK, NETLINK_NETFILTER, 0, 0,
                                NDIAG_SHOW_GROUPS | NDIAG_SHOW_FLAGS, b"\xff" * 8)
    sock.send(NLMSGHDR.pack(NLMSGHDR.size + len(req), SOCK_DIAG_BY_FAMILY,
                            NLM_F_REQUEST | NLM_F_DUMP, 1, 0) + req)
    buf = bytearray(1 << 16)
    found = {}
    try:
        while True:
            n = sock.recv_into(buf)
            for mtype, _flags, payload in iter_messages(buf, n):
                if mtype == NLMSG_DONE:
                    return list(found.values())
                if mtype == NLMSG_ERROR:
                    err = -struct.unpack_from("=i", payload, 0)[0]
                    raise OSError(err, "netlink sock_diag: " + os.strerror(err))
                _fam, _type, _proto, _state, portid, _dp, _dg, inode, _c = \
                    NETLINK_DIAG_MSG.unpack_from(payload, 0)
                a = parse_attrs(payload, NETLINK_DIAG_MSG.size, len(payload))
                mask = int.from_bytes(a.get(NETLINK_DIAG_GROUPS, b""), "little")
                flags = int.from_bytes(a.get(NETLINK_DIAG_FLAGS, b"\0\0\0\0"), "little")
                groups = [g + 1 for g in range(mask.bit_length()) if mask >> g & 1]
                if groups:
                    found[inode] = {"portid": portid, "inode": inode, "groups": groups,
                                    "broadcast_error": bool(flags & NDIAG_FLAG_BROADCAST_ERROR),
                                    "no_enobufs": bool(flags & NDIAG_FLAG_NO_ENOBUFS)}
    finally:
        sock.close()


def cmd_listeners(_args):
    for listener in event_listeners():
        emit(listener)
    emit({"done": True})
    return 0


def cmd_dump(_args):
    entries, interrupted = dump_table()
    for e in entries:
        emit(e)
    emit({"done": True, "entries": len(entries), "interrupted": interrupted})
    return 0


def main(argv):
    commands = {"events": cmd_events, "dump": cmd_dump, "listeners": cmd_listeners}
    if len(argv) < 2 or argv[1] not in commands:
        sys.stderr.write(__doc__)
        return 2
    return commands[argv[1]](argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
