#!/bin/bash
# sfp-test/postgres entrypoint: the contract of the upstream supabase/postgres image (initialise an
# empty data directory, run the mounted init scripts and migrations once, then run the server).
set -Eeuo pipefail

log() { printf '%s sfp-test/postgres: %s\n' "$(date -u +'%Y-%m-%d %H:%M:%S UTC')" "$*" >&2; }

# Like docker-library's entrypoint: options alone mean "postgres <options>", anything else runs as is.
case "${1:-}" in
    -*) set -- postgres "$@" ;;
esac
if [ "${1:-}" != postgres ]; then
    exec "$@"
fi

export PGDATA="${PGDATA:-/var/lib/postgresql/data}"
export POSTGRES_DB="${POSTGRES_DB:-postgres}"
export POSTGRES_USER="${POSTGRES_USER:-supabase_admin}"
export PGPORT="${PGPORT:-${POSTGRES_PORT:-5432}}"
socket_dir=/var/run/postgresql

if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA" "$socket_dir"
    # The data directory is a bind mount from the host: whatever made it, postgres must own it.
    find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' +
    chown postgres:postgres "$socket_dir"
    case "$(stat -c %a "$PGDATA")" in
        700 | 750) ;;
        *) chmod 700 "$PGDATA" ;;
    esac
    exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
fi

# Upstream's image preloads pgsodium, whose getkey script creates the server's root key in the
# db-config volume at the first start and reads it at every start; Vault's secrets are encrypted
# under it. Only the file is reproduced here (no pgsodium): it is what a backup must carry.
key_file=/etc/postgresql-custom/pgsodium_root.key
if [ ! -e "$key_file" ] && [ -w "$(dirname "$key_file")" ]; then
    (umask 077 && head -c 32 /dev/urandom | od -A n -t x1 | tr -d ' \n' > "$key_file")
fi

# The cluster is made in a directory inside the mount and moved into place only once every init
# script has succeeded; a leftover staging directory means an earlier start died half-way.
staging="$PGDATA/.sfp-initdb"

wipe_data_dir() {
    find "$PGDATA" -mindepth 1 -maxdepth 1 -exec rm -rf '{}' +
}

if [ -e "$staging" ]; then
    log "removing the half-initialised cluster an earlier start left behind"
    wipe_data_dir
fi

if [ -n "$(ls -A "$PGDATA")" ]; then
    exec "$@"
fi

if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    log "error: POSTGRES_PASSWORD is not set; it is the initial password of every login role"
    exit 1
fi

temp_server_running=0
fail() {
    local status=$?
    trap - ERR EXIT INT TERM
    if [ "$temp_server_running" = 1 ]; then
        pg_ctl -D "$staging" -m immediate -w stop > /dev/null 2>&1 || true
    fi
    rm -rf "$staging"
    log "error: initialisation failed (status $status); the data directory is left empty"
    exit 1
}
trap fail ERR INT TERM
trap 'if [ -e "$staging" ]; then fail; fi' EXIT

log "initialising a new cluster in $PGDATA"
mkdir -m 700 "$staging"
pwfile="$(mktemp)"
printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
# shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a list of options, as upstream.
initdb -D "$staging" --username=supabase_admin --pwfile="$pwfile" \
    --auth-local=trust --auth-host=scram-sha-256 \
    --encoding=UTF8 --locale=C.UTF-8 ${POSTGRES_INITDB_ARGS:-} > /dev/null
rm -f "$pwfile"

# The temporary server listens on the socket only, so nothing reaches a half-made database.
pg_ctl -D "$staging" -w -t 60 -o "-c config_file=/etc/postgresql/postgresql.conf -c listen_addresses=''" start
temp_server_running=1

export PGHOST="$socket_dir" PGUSER=supabase_admin PGDATABASE="$POSTGRES_DB"
export PGPASSWORD="${PGPASSWORD:-$POSTGRES_PASSWORD}"
psql_run=(psql -v ON_ERROR_STOP=1 --no-password --no-psqlrc -U supabase_admin)

if [ "$POSTGRES_DB" != postgres ]; then
    "${psql_run[@]}" -d postgres -v db="$POSTGRES_DB" <<< 'CREATE DATABASE :"db";'
fi
log "running the baseline"
# The password reaches psql in its environment (baseline.sql: \getenv), not on its command line.
"${psql_run[@]}" -q -d "$POSTGRES_DB" -f /usr/local/share/sfp-test/baseline.sql

for dir in /docker-entrypoint-initdb.d/init-scripts /docker-entrypoint-initdb.d/migrations; do
    [ -d "$dir" ] || continue
    while IFS= read -r -d '' script; do
        case "$script" in
            *.sql)
                log "running $script"
                "${psql_run[@]}" -d "$POSTGRES_DB" -f "$script"
                ;;
            *.sh)
                log "running $script"
                bash "$script"
                ;;
            *) log "ignoring $script" ;;
        esac
    done < <(find "$dir" -mindepth 1 -maxdepth 1 \( -type f -o -type l \) -print0 | sort -z)
done

pg_ctl -D "$staging" -m fast -w stop
temp_server_running=0

# PG_VERSION goes last, so that a directory holding it holds a complete cluster.
find "$staging" -mindepth 1 -maxdepth 1 \! -name PG_VERSION -exec mv -t "$PGDATA" '{}' +
mv "$staging/PG_VERSION" "$PGDATA/"
rmdir "$staging"
trap - ERR EXIT INT TERM
unset PGHOST PGUSER PGDATABASE
log "initialisation complete; starting the server"

exec "$@"
