#!/usr/bin/env bash
# A streaming replica of a throwaway cluster (deploy/pg-throwaway.sh), for
# the failover tests (README "Database failover").
#   pg-throwaway-replica.sh start DIR PORT PRIMARY_DIR PRIMARY_PORT [sync|async]
#       pg_basebackup -R of the primary into DIR, started as a hot standby on
#       PORT (unix socket in DIR); with "sync" (the default) the primary then
#       waits for it at every commit (synchronous_commit = on,
#       synchronous_standby_names = its name) and the script waits until the
#       primary reports it as synchronous. Prints the standby's libpq URL.
#   pg-throwaway.sh stop DIR   stops and removes it, like any throwaway cluster.
# Promote it with: runuser -u postgres -- pg_ctl promote -D DIR/data
# Throwaway data only (trust authentication). Run as root.
set -euo pipefail

die() {
    echo "pg-throwaway-replica: $*" >&2
    exit 1
}
[[ ${1:-} == start && $# -ge 5 ]] ||
    { echo "usage: $0 start DIR PORT PRIMARY_DIR PRIMARY_PORT [sync|async]" >&2; exit 2; }
dir=$2 port=$3 primary=$4 primary_port=$5 mode=${6:-sync}
[[ $mode == sync || $mode == async ]] || die "mode must be sync or async, not '$mode'"
[[ "$port" =~ ^[0-9]+$ && "$primary_port" =~ ^[0-9]+$ ]] || die "ports must be numbers"
[[ "$dir" == /* && "$primary" == /* ]] || die "DIR and PRIMARY_DIR must be absolute paths"
[[ -f "$primary/.ctquota-pg-throwaway" ]] || die "$primary is no throwaway cluster"
if [[ -e "$dir" ]]; then
    [[ -d "$dir" && -z "$(ls -A "$dir")" ]] || die "$dir exists and is not an empty directory"
fi
pgbin=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
[[ -x "$pgbin/pg_basebackup" ]] || die "PostgreSQL server binaries not found"
as_pg() { runuser -u postgres -- "$@"; }
psql_primary() { as_pg "$pgbin/psql" -X -qAt -v ON_ERROR_STOP=1 -h "$primary" -p "$primary_port" -d postgres "$@"; }
readonly name=ctq_replica

mkdir -p "$dir"
touch "$dir/.ctquota-pg-throwaway"  # pg-throwaway.sh stop removes it
chown postgres: "$dir"
chmod 755 "$dir"
trap 'rc=$?; if ((rc != 0)); then [[ -f "$dir/server.log" ]] && tail -n 20 "$dir/server.log" >&2; fi' EXIT

as_pg "$pgbin/pg_basebackup" -h "$primary" -p "$primary_port" -U postgres -D "$dir/data" -R \
    -X stream -c fast --no-sync >"$dir/basebackup.log" 2>&1 || { cat "$dir/basebackup.log" >&2; die "pg_basebackup failed"; }
# The copied postgresql.conf is the primary's: later lines win.
cat >>"$dir/data/postgresql.conf" <<CONF

# pg-throwaway-replica.sh
port = $port
unix_socket_directories = '$dir'
cluster_name = '$name'
hot_standby = on
CONF
# -R wrote primary_conninfo; name the standby so that the primary can wait for it.
echo "primary_conninfo = 'host=$primary port=$primary_port user=postgres application_name=$name'" \
    >>"$dir/data/postgresql.auto.conf"
as_pg "$pgbin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start >/dev/null ||
    die "the standby did not start"

tries=0
until [[ $(psql_primary -c "SELECT count(*) FROM pg_stat_replication WHERE application_name = '$name' AND state = 'streaming'") == 1 ]]; do
    ((++tries < 300)) || die "the standby does not stream"
    sleep 0.1
done
if [[ $mode == sync ]]; then
    psql_primary -c "ALTER SYSTEM SET synchronous_commit = 'on'" \
        -c "ALTER SYSTEM SET synchronous_standby_names = '$name'" -c "SELECT pg_reload_conf()" >/dev/null
    tries=0
    until [[ $(psql_primary -c "SELECT sync_state FROM pg_stat_replication WHERE application_name = '$name'") == sync ]]; do
        ((++tries < 300)) || die "the standby did not become synchronous"
        sleep 0.1
    done
fi
echo "postgresql:///ctquota?host=$dir&port=$port&user=postgres"
