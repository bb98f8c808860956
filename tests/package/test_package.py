"""The Debian package, built, linted, installed on this machine and purged.

    test_package.py BUILD_DIR

1. cpack builds ctquota_<version>_<arch>.deb from BUILD_DIR (CPackConfig.cmake);
2. lintian reports no error;
3. dpkg -i: the binary in /usr/sbin, schema/web/policies under
   /usr/share/ctquota, /etc/ctquota/ctquotad.toml a conffile (root:ctquota
   0640), the system user ctquota, the unit, the man page; `ctquotad
   --version`; `ctquotad --config /etc/ctquota/ctquotad.toml migrate` run as
   the ctquota user against a fresh database of the throwaway cluster (its
   URL written into the installed config);
4. dpkg --purge leaves nothing of the package but the system user (Debian
   policy keeps it), which this test then removes if it created it.

Installing changes the machine, so: one run at a time (flock), never over
a ctquota package someone installed (the test refuses), and the purge (and
the user's removal) happen in `finally`, also when a check fails.
"""

import fcntl
import glob
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "netns"))
from daemon_harness import build_url  # noqa: E402

LOCK = "/run/lock/ctquota-package-test.lock"
CONFIG = "/etc/ctquota/ctquotad.toml"
SHIPPED = ["/usr/sbin/ctquotad", "/usr/share/ctquota/schema", "/usr/share/ctquota/web/index.html",
           "/usr/share/ctquota/policies/home-100g.toml", CONFIG, "/etc/ctquota/policies",
           "/lib/systemd/system/ctquotad.service", "/usr/share/man/man8/ctquotad.8.gz",
           "/usr/share/doc/ctquota/copyright", "/usr/share/doc/ctquota/changelog.gz"]


def sh(argv, check=True, **kw):
    r = subprocess.run(argv, capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} -> {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def installed():
    r = sh(["dpkg-query", "-W", "-f=${Status}", "ctquota"], check=False)
    return "installed" in r.stdout or "config-files" in r.stdout


def user_exists():
    try:
        pwd.getpwnam("ctquota")
        return True
    except KeyError:
        return False


def build(build_dir, out):
    sh(["cmake", "--build", build_dir, "--target", "ctquotad", "package_docs"])
    sh(["cpack", "-G", "DEB", "-B", out, "--config", os.path.join(build_dir, "CPackConfig.cmake")])
    debs = glob.glob(os.path.join(out, "ctquota_*.deb"))
    check(len(debs) == 1, f"cpack made {debs}")
    return debs[0]


def lint(deb):
    r = sh(["lintian", "--allow-root", "--no-tag-display-limit", deb], check=False)
    errors = [line for line in r.stdout.splitlines() if line.startswith("E:")]
    check(not errors, "lintian errors:\n" + "\n".join(errors))
    return [line for line in r.stdout.splitlines() if line.startswith("W:")]


def check_installed(version_text):
    for path in SHIPPED:
        check(os.path.exists(path), f"{path} not installed")
    conffiles = sh(["dpkg-query", "-W", "-f=${Conffiles}", "ctquota"]).stdout
    check(CONFIG in conffiles, f"{CONFIG} is not a conffile: {conffiles!r}")
    user = pwd.getpwnam("ctquota")
    check(user.pw_uid < 1000 and user.pw_shell in ("/usr/sbin/nologin", "/bin/false"),
          f"ctquota is not a system user: {user}")
    st = os.stat(CONFIG)
    check((st.st_uid, st.st_mode & 0o777) == (0, 0o640) and st.st_gid == user.pw_gid,
          f"{CONFIG}: uid {st.st_uid} gid {st.st_gid} mode {st.st_mode & 0o777:o}")
    out = sh(["/usr/sbin/ctquotad", "--version"]).stdout.strip()
    check(out == f"ctquotad {version_text}", f"--version printed {out!r}, expected {version_text!r}")
    man = sh(["man", "--warnings", "-l", "/usr/share/man/man8/ctquotad.8.gz"],
             env=dict(os.environ, MANWIDTH="80"))
    check("SIGHUP" in man.stdout and "migrate" in man.stdout and not man.stderr.strip(),
          f"man page: {man.stderr!r}")


def migrate_as_daemon_user(base_url):
    dbname = "pkg_" + uuid.uuid4().hex[:12]
    sh(["psql", base_url, "-qc", f'CREATE DATABASE "{dbname}"'])
    try:
        with open(CONFIG) as f:
            text = f.read()
        url = build_url(base_url, dbname)
        text, n = re.subn(r'^url = ".*"$', f'url = "{url}"', text, count=1, flags=re.M)
        check(n == 1, "no [database] url line in the shipped config")
        with open(CONFIG, "w") as f:  # keeps its owner and mode
            f.write(text)
        r = sh(["runuser", "-u", "ctquota", "--", "/usr/sbin/ctquotad", "--config", CONFIG, "migrate"])
        check("migrations applied" in r.stderr, f"migrate said: {r.stderr[-2000:]}")
        tables = sh(["psql", url, "-XAtc", "SELECT count(*) FROM schema_migrations"]).stdout.strip()
        schema_files = len(glob.glob("/usr/share/ctquota/schema/*.sql"))
        check(int(tables) == schema_files, f"{tables} migrations recorded, {schema_files} shipped")
    finally:
        sh(["psql", base_url, "-qc", f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)'], check=False)


def purge_and_check(files):
    sh(["dpkg", "--purge", "ctquota"])
    left = [f for f in files if os.path.lexists(f)]
    check(not left, f"left after purge: {left}")
    check(not installed(), "dpkg still knows ctquota after purge")
    check(sh(["dpkg-statoverride", "--list", CONFIG], check=False).returncode != 0,
          "the statoverride of the config survived the purge")


def run(build_dir, base_url, version_text):
    out = tempfile.mkdtemp(prefix="ctquota-deb-")
    created_user = False
    try:
        deb = build(build_dir, out)
        warnings = lint(deb)
        files = [line.split()[-1].lstrip(".") for line in
                 sh(["dpkg-deb", "-c", deb]).stdout.splitlines() if not line.endswith("/")]
        created_user = not user_exists()
        sh(["dpkg", "-i", deb])
        check_installed(version_text)
        migrate_as_daemon_user(base_url)
        purge_and_check(files + ["/etc/ctquota", "/usr/share/ctquota"])
        check(user_exists(), "the system user went with the purge (Debian policy keeps it)")
        print(f"package: {os.path.basename(deb)}, {os.path.getsize(deb) // 1024} KiB, "
              f"{len(files)} files, lintian: 0 errors, {len(warnings)} warnings")
        for w in warnings:
            print("  " + w)
    finally:
        if installed():
            sh(["dpkg", "--purge", "ctquota"], check=False)
        if created_user and user_exists():
            sh(["deluser", "--quiet", "--system", "ctquota"], check=False)
            sh(["delgroup", "--quiet", "--system", "ctquota"], check=False)
        shutil.rmtree(out, ignore_errors=True)


def main():
    if os.geteuid() != 0:
        print("test_package.py needs root (dpkg -i)", file=sys.stderr)
        return 1
    build_dir, version_text = sys.argv[1], sys.argv[2]
    base_url = os.environ.get("CTQUOTA_TEST_DB_URL")
    if not base_url:
        raise RuntimeError("CTQUOTA_TEST_DB_URL is not set: run the tests through tests/run.sh")
    os.makedirs(os.path.dirname(LOCK), exist_ok=True)
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a parallel run waits here
        if installed():
            print("a ctquota package is installed on this machine: not touching it", file=sys.stderr)
            return 1
        run(build_dir, base_url, version_text)
    print("test_package.py: PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
