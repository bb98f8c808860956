#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for tests and the demo.
#   pg-throwaway.sh start DIR [PORT]   initdb in DIR (absent or empty), start it, create the
#                                      database "ctquota", print a libpq URL on stdout
#   pg-throwaway.sh stop DIR           stop it fast and remove DIR
# The server listens on a unix socket in DIR and on 127.0.0.1:PORT (default 54329). The URL
# uses the socket, so it works from any network namespace (netns tests), and DIR is made
# world-accessible so a daemon running as another user can connect. Authentication is
# "trust": never use this for anything but throwaway data. Run as root.
# Only the URL goes to stdout; progress and errors go to stderr.
set -euo pipefail

readonly MARKER=.ctquota-pg-throwaway  # stop removes only directories start created

die() {
    echo "pg-throwaway: $*" >&2
    exit 1
}
usage() {
    echo "usage: $0 start DIR [PORT] | stop DIR" >&2
    exit 2
}

cmd=${1:-}
dir=${2:-}
port=${3:-54329}
[[ -n "$cmd" && -n "$dir" ]] || usage

pgbin=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
[[ -n "$pgbin" && -x "$pgbin/initdb" ]] ||
    die "PostgreSQL server binaries not found under /usr/lib/postgresql (run deploy/install-deps.sh)"
as_pg() { runuser -u postgres -- "$@"; }

# libpq URIs percent-decode query values: encode everything outside the unreserved set.
urlencode() {
    local s=$1 out="" c i
    for ((i = 0; i < ${#s}; i++)); do
        c=${s:i:1}
        case "$c" in
            [A-Za-z0-9/._~-]) out+=$c ;;
            *) out+=$(printf '%%%02X' "'$c") ;;
        esac
    done
    printf '%s' "$out"
}

stop_server() {
    [[ -f "$dir/data/postmaster.pid" ]] || return 0
    # fast: disconnect clients and shut down cleanly; fsync is off so this takes well under a
    # second. Fall back to immediate if something holds it up.
    as_pg "$pgbin/pg_ctl" -D "$dir/data" -m fast -w -t 20 stop >/dev/null 2>&1 ||
        as_pg "$pgbin/pg_ctl" -D "$dir/data" -m immediate -w -t 20 stop >/dev/null 2>&1 || true
}

start() {
    [[ $(id -u) -eq 0 ]] || die "start needs root (it runs the server as user postgres)"
    id postgres >/dev/null 2>&1 || die "no 'postgres' user (install postgresql-15)"
    [[ "$port" =~ ^[0-9]+$ ]] && ((port >= 1024 && port <= 65535)) ||
        die "PORT must be a number in 1024..65535, got '$port'"
    [[ "$dir" == /* ]] || dir=$(pwd)/$dir
    if [[ -e "$dir" ]]; then
        [[ -d "$dir" && -z "$(ls -A "$dir")" ]] || die "$dir exists and is not an empty directory"
    fi
    # The socket path (DIR/.s.PGSQL.PORT) must fit in sun_path (107 bytes).
    local sock="$dir/.s.PGSQL.$port"
    ((${#sock} <= 107)) || die "socket path $sock is too long; use a shorter DIR"

    mkdir -p "$dir"
    touch "$dir/$MARKER"
    chown postgres: "$dir"
    chmod 755 "$dir"  # clients of any user reach the socket (the socket itself is 0777)
    as_pg test -w "$dir" -a -x "$dir" ||
        die "user postgres cannot write $dir (a parent directory is not searchable?)"

    # From here on a failure stops what we started; stop removes the directory.
    trap 'rc=$?; if ((rc != 0)); then [[ -f "$dir/server.log" ]] && tail -n 20 "$dir/server.log" >&2; stop_server; fi' EXIT

    as_pg "$pgbin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 \
        --no-sync >"$dir/initdb.log" 2>&1 || {
        cat "$dir/initdb.log" >&2
        die "initdb failed"
    }
    cat >>"$dir/data/postgresql.conf" <<CONF

# pg-throwaway.sh: disposable, fast, not durable
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
unix_socket_permissions = 0777
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
shared_buffers = 128MB
CONF
    # -w waits for the server to accept connections (pg_ctl polls); then confirm on the socket.
    as_pg "$pgbin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null ||
        die "the server did not start (port $port in use?)"
    local tries=0
    until "$pgbin/pg_isready" -q -h "$dir" -p "$port" -t 1; do
        ((++tries < 100)) || die "the server is not ready on $sock"
        sleep 0.1
    done
    as_pg "$pgbin/psql" -X -q -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -d postgres \
        -c "CREATE DATABASE ctquota" >/dev/null || die "cannot create database ctquota"
    echo "postgresql:///ctquota?host=$(urlencode "$dir")&port=$port&user=postgres"
}

stop() {
    [[ -d "$dir" ]] || return 0
    [[ -f "$dir/$MARKER" ]] || die "not removing $dir: it was not created by pg-throwaway.sh"
    stop_server
    rm -rf -- "$dir"
}

case "$cmd" in
    start) start ;;
    stop) stop ;;
    *) usage ;;
esac
