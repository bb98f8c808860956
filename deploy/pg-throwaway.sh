#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for tests and the demo.
#   pg-throwaway.sh start DIR [PORT]   initdb in DIR, start, create database
#                                      "ctquota", print a libpq URL on stdout
#   pg-throwaway.sh stop DIR           stop it and remove DIR
# The URL uses the unix socket in DIR, so it works from any network namespace.
set -euo pipefail

cmd=${1:-}
dir=${2:-}
port=${3:-54329}
[[ -n "$cmd" && -n "$dir" ]] || { echo "usage: $0 start|stop DIR [PORT]" >&2; exit 2; }

pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[[ -x "$pgbin/initdb" ]] || { echo "PostgreSQL server binaries not found (deploy/install-deps.sh)" >&2; exit 1; }
as_pg() { runuser -u postgres -- "$@"; }

case "$cmd" in
start)
    mkdir -p "$dir"
    chown postgres: "$dir"
    chmod 755 "$dir"   # the socket must be reachable by clients running as root
    as_pg "$pgbin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; exit 1; }
    cat >>"$dir/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
shared_buffers = 256MB
CONF
    as_pg "$pgbin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null \
        || { cat "$dir/server.log" >&2; exit 1; }
    for _ in $(seq 1 100); do
        "$pgbin/pg_isready" -q -h "$dir" -p "$port" && break
        sleep 0.1
    done
    "$pgbin/pg_isready" -q -h "$dir" -p "$port" || { echo "PostgreSQL did not become ready" >&2; exit 1; }
    as_pg "$pgbin/psql" -q -h "$dir" -p "$port" -d postgres -c "CREATE DATABASE ctquota" >/dev/null
    echo "postgresql:///ctquota?host=$dir&port=$port&user=postgres"
    ;;
stop)
    if [[ -f "$dir/data/postmaster.pid" ]]; then
        as_pg "$pgbin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    case "$dir" in
        /tmp/*|/var/tmp/*) rm -rf "$dir" ;;
        *) echo "not removing $dir (not under /tmp)" >&2 ;;
    esac
    ;;
*)
    echo "usage: $0 start|stop DIR [PORT]" >&2; exit 2 ;;
esac
