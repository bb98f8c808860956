"""Processes and network namespaces for the netns tests and the demo: every
namespace and process made here is removed on exit, on exceptions and on
SIGTERM/SIGINT/SIGHUP (an atexit hook is the backstop); processes are ended by
PID. Split out of topology.py, which builds the lab on top of it."""

import atexit
import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CTNL = os.path.join(HERE, "ctnl.py")
TRAFFIC = os.path.join(HERE, "trafficgen.py")
PYTHON = sys.executable or "python3"

NAME_RE = re.compile(r"^ctq-(\d+)-(\d+)-(sub|gw|srv|db|gw[12]|srv[12])$")

_counter = 0
_counter_lock = threading.Lock()
_live = []  # objects with a destroy() method, most recent last
_hooks_installed = False

try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # pragma: no cover
    _prctl = None
PR_SET_PDEATHSIG = 1


def _next_id():
    global _counter
    with _counter_lock:
        _counter += 1
        return f"ctq-{os.getpid()}-{_counter}"


def log(msg):
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


def wait_until(predicate, timeout, interval=0.05, what="condition"):
    """Polls predicate() until it returns something truthy, which is returned."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def sh(argv, check=True, timeout=60, **kw):
    if "input" not in kw:
        kw["stdin"] = subprocess.DEVNULL
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({r.returncode}): "
                           f"{(r.stderr or r.stdout).strip()}")
    return r


# ------------------------------------------------------------ cleanup hooks

def _cleanup_all():
    while _live:
        obj = _live[-1]
        try:
            obj.destroy()
        except Exception as e:  # keep going: the rest must go too
            log(f"cleanup of {obj!r} failed: {e}")
        if _live and _live[-1] is obj:
            _live.pop()


def _on_signal(sig, _frame):
    # Unwind the main thread: finally blocks and context managers clean up;
    # atexit is the backstop.
    if sig == signal.SIGINT:
        raise KeyboardInterrupt
    raise SystemExit(128 + sig)


def _install_hooks():
    global _hooks_installed
    if _hooks_installed:
        return
    _hooks_installed = True
    atexit.register(_cleanup_all)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            if signal.getsignal(sig) in (signal.SIG_DFL, signal.default_int_handler):
                signal.signal(sig, _on_signal)


class _SignalsBlocked:
    """Cleanup must not be interrupted halfway by a second Ctrl-C."""
    SIGS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.old = signal.pthread_sigmask(signal.SIG_BLOCK, self.SIGS)
        else:
            self.old = None

    def __exit__(self, *exc):
        if self.old is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, self.old)


# ------------------------------------------------------------ processes

def _child_setup():
    os.setsid()  # Ctrl-C on the terminal reaches us only; we stop children in order
    if _prctl is not None:
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class Proc:
    """A process started in a namespace. stdout lines are collected (and
    parsed as JSON when they are JSON); stderr goes to a log file."""

    def __init__(self, name, argv, log_path, capture=True, env=None, cwd=None,
                 pdeathsig=True):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self._logf = open(log_path, "ab")
        self.lines = []
        self._cond = threading.Condition()
        self._eof = False
        self.popen = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if capture else self._logf, stderr=self._logf,
            env=env, cwd=cwd,
            preexec_fn=_child_setup if pdeathsig else os.setsid)
        self.pid = self.popen.pid
        if capture:
            self._reader = threading.Thread(target=self._read, daemon=True)
            self._reader.start()
        else:
            self._eof = True

    def _read(self):
        for raw in self.popen.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            try:
                item = json.loads(line)
            except ValueError:
                item = line
            with self._cond:
                self.lines.append(item)
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def wait_line(self, predicate, timeout, what=None):
        """Returns the first stdout item (JSON object or str) satisfying predicate."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for item in self.lines[seen:]:
                    if predicate(item):
                        return item
                seen = len(self.lines)
                if self._eof:
                    raise RuntimeError(f"{self.name} ended (rc={self.popen.poll()}) before "
                                       f"{what or 'the expected output'}; log: {self.tail()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{self.name}: no {what or 'expected output'} after "
                                       f"{timeout:g} s; log: {self.tail()}")
                self._cond.wait(left)

    def last(self, predicate):
        with self._cond:
            for item in reversed(self.lines):
                if predicate(item):
                    return item
        return None

    def wait_eof(self, timeout):
        with self._cond:
            if not self._cond.wait_for(lambda: self._eof, timeout):
                raise TimeoutError(f"{self.name} still running after {timeout:g} s")

    def alive(self):
        return self.popen.poll() is None

    def wait(self, timeout=None):
        rc = self.popen.wait(timeout)
        if self.popen.stdout is not None:
            self.wait_eof(5)
        return rc

    def send_signal(self, sig):
        if self.popen.poll() is None:
            os.kill(self.pid, sig)

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        """Sends sig, waits up to timeout, then SIGKILL. Returns the exit status."""
        if self.popen.poll() is None:
            try:
                os.kill(self.pid, sig)
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                log(f"{self.name} (pid {self.pid}) ignored signal {sig}; killing it")
                os.kill(self.pid, signal.SIGKILL)
                self.popen.wait(10)
            except ProcessLookupError:
                pass
        return self.popen.poll()

    def close(self):
        if self.popen.stdout is not None:
            self.popen.stdout.close()
        self._logf.close()

    def tail(self, n=15):
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode(errors="replace").splitlines()
            return "\n    ".join([""] + lines[-n:]) if lines else "(empty)"
        except OSError:
            return "(no log)"

    def __repr__(self):
        return f"<Proc {self.name} pid={self.pid}>"


# ------------------------------------------------------------ namespaces

class NetnsSet:
    """Namespaces and processes owned by this run; base of Topology."""

    def __init__(self, keep_logs=None):
        self.id = _next_id()
        self.namespaces = []
        self.procs = []
        self.workdir = None
        self.keep_logs = (os.environ.get("CTQ_KEEP_LOGS") == "1") if keep_logs is None else keep_logs
        self._destroyed = False

    def _begin(self):
        _install_hooks()
        self.workdir = tempfile.mkdtemp(prefix=f"{self.id}-")
        _live.append(self)

    def add_netns(self, role):
        name = f"{self.id}-{role}"
        if not NAME_RE.match(name):
            raise ValueError(name)
        sh(["ip", "netns", "add", name])
        self.namespaces.append(name)
        return name

    def run_in(self, ns, argv, check=True, timeout=60, **kw):
        return sh(["ip", "netns", "exec", ns] + list(argv), check=check, timeout=timeout, **kw)

    def start_in(self, ns, argv, name=None, capture=True, env=None, pdeathsig=True):
        """Starts argv inside ns; the process is ended on cleanup (by PID).
        With pdeathsig (default) it also dies if the creating thread dies,
        so call this from the main thread or a thread that outlives it."""
        name = name or os.path.basename(argv[0])
        log_path = os.path.join(self.workdir, f"{len(self.procs):02d}-{name}.log")
        p = Proc(name, ["ip", "netns", "exec", ns] + list(argv), log_path, capture=capture,
                 env=env, pdeathsig=pdeathsig)
        self.procs.append(p)
        return p

    def sysctl(self, ns, key):
        return self.run_in(ns, ["sysctl", "-n", key]).stdout.strip()

    def set_sysctls(self, ns, values, verify=True):
        args = [f"{k}={v}" for k, v in values.items()]
        self.run_in(ns, ["sysctl", "-q", "-w"] + args)
        if verify:
            for k, v in values.items():
                got = self.sysctl(ns, k)
                if got != str(v):
                    raise RuntimeError(f"{ns}: {k} reads back {got!r}, wanted {v!r}")

    def ip_batch(self, ns, lines):
        sh(["ip", "-n", ns, "-batch", "-"], input="\n".join(lines) + "\n")

    def destroy(self):
        if self._destroyed:
            return
        with _SignalsBlocked():
            for p in reversed(self.procs):
                try:
                    p.stop(signal.SIGTERM, timeout=5)
                except Exception as e:
                    log(f"stopping {p!r}: {e}")
            for ns in reversed(self.namespaces):
                self._empty_netns(ns)
                r = sh(["ip", "netns", "del", ns], check=False)
                if r.returncode != 0 and os.path.exists(f"/run/netns/{ns}"):
                    log(f"could not delete netns {ns}: {r.stderr.strip()}")
            for p in self.procs:
                p.close()
            if self.workdir and not self.keep_logs:
                shutil.rmtree(self.workdir, ignore_errors=True)
            elif self.workdir:
                log(f"logs kept in {self.workdir}")
            self._destroyed = True
            if self in _live:
                _live.remove(self)

    @staticmethod
    def _empty_netns(ns):
        """Kills what is still running inside one of our namespaces: only our
        own children can be there."""
        for _ in range(50):
            r = sh(["ip", "netns", "pids", ns], check=False)
            pids = [int(x) for x in r.stdout.split()] if r.returncode == 0 else []
            pids = [p for p in pids if p != os.getpid()]
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)  # the kernel reaps asynchronously; re-list
        log(f"processes still in {ns} after SIGKILL")

    def __enter__(self):
        self.create()
        return self

    def __exit__(self, *exc):
        self.destroy()
        return False

    def create(self):  # overridden
        self._begin()
