"""A service manager's file descriptor store for the daemon under test, as
systemd keeps one (FileDescriptorStoreMax=, sd_pid_notify_with_fds(3),
sd_listen_fds(3)): the daemon sends "FDSTORE=1\\nFDNAME=<name>" with a
descriptor (SCM_RIGHTS) to NOTIFY_SOCKET; every later start gets the stored
descriptors back from fd 3 on, with LISTEN_PID, LISTEN_FDS and
LISTEN_FDNAMES. Like systemd, the store closes a descriptor that reports
POLLERR or POLLHUP, and keeps the rest until it is flushed (a "stop").

    store = FdStore(workdir)
    argv, env, pass_fds = store.launch([binary, "--config", cfg])
    Popen(["ip", "netns", "exec", ns] + argv, env=env, pass_fds=pass_fds)
    store.names()  -> the names stored so far
    store.flush()  -> forget everything (systemctl stop)
    store.close()
"""

import array
import fcntl
import os
import select
import socket
import threading

FIRST_FD = 3  # SD_LISTEN_FDS_START
HIGH_FD = 100  # stored copies live above the test's own descriptors


class FdStore:
    def __init__(self, workdir):
        self.path = os.path.join(workdir, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.lock = threading.Lock()
        self.fds = {}  # name -> fd (ours, >= HIGH_FD)
        self.dropped = []  # names closed because of POLLERR/POLLHUP
        self.messages = []
        self.stop_r, self.stop_w = os.pipe()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            with self.lock:
                watched = dict(self.fds)
            poller = select.poll()
            poller.register(self.sock, select.POLLIN)
            poller.register(self.stop_r, select.POLLIN)
            for fd in watched.values():
                poller.register(fd, 0)  # errors and hang-ups only, as systemd watches them
            for fd, events in poller.poll(200):
                if fd == self.stop_r:
                    return
                if fd == self.sock.fileno():
                    self._receive()
                elif events & (select.POLLERR | select.POLLHUP):
                    self._drop(fd)

    def _receive(self):
        fds = array.array("i")
        msg, ancdata, _flags, _addr = self.sock.recvmsg(4096, socket.CMSG_SPACE(16 * fds.itemsize))
        for level, kind, data in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(data[:len(data) - (len(data) % fds.itemsize)])
        fields = dict(line.split("=", 1) for line in msg.decode().splitlines() if "=" in line)
        with self.lock:
            self.messages.append(fields)
            if fields.get("FDSTORE") != "1":
                for fd in fds:
                    os.close(fd)
                return
            name = fields.get("FDNAME", "stored")
            for fd in fds:
                high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, HIGH_FD)
                os.close(fd)
                if name in self.fds:
                    os.close(self.fds[name])
                self.fds[name] = high

    def _drop(self, fd):
        with self.lock:
            for name, stored in list(self.fds.items()):
                if stored == fd:
                    del self.fds[name]
                    self.dropped.append(name)
                    os.close(fd)

    def names(self):
        with self.lock:
            return sorted(self.fds)

    def flush(self):
        with self.lock:
            for fd in self.fds.values():
                os.close(fd)
            self.fds = {}

    def launch(self, argv, env=None):
        """(argv, env, pass_fds) to start `argv` with the stored descriptors:
        bash moves them to 3, 4, ... and sets LISTEN_PID to its own pid before
        exec'ing the daemon (same pid: `ip netns exec` execs too)."""
        env = dict(os.environ if env is None else env)
        env["NOTIFY_SOCKET"] = self.path
        with self.lock:
            stored = sorted(self.fds.items())
        moves = " ".join(f"{FIRST_FD + i}<&{fd} {fd}<&-" for i, (_, fd) in enumerate(stored))
        script = (f"exec {moves}; " if moves else "") + 'LISTEN_PID=$$ exec "$@"'
        for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
            env.pop(key, None)
        if stored:
            env["LISTEN_FDS"] = str(len(stored))
            env["LISTEN_FDNAMES"] = ":".join(name for name, _ in stored)
        return ["bash", "-c", script, "bash"] + list(argv), env, tuple(fd for _, fd in stored)

    def close(self):
        if self.sock.fileno() < 0:
            return  # closed already
        os.write(self.stop_w, b"x")
        self.thread.join(timeout=5)
        self.flush()
        for fd in (self.stop_r, self.stop_w):
            os.close(fd)
        self.sock.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
