#!/usr/bin/env bash
# A throwaway PostgreSQL server on loopback, for the storage tests and the load benchmark.
#
#   bash scripts/postgres.sh [start]   install if missing, start if not running, print the URL
#   eval "$(bash scripts/postgres.sh env)"   ... and export SENTINEL_TEST_POSTGRES_URL
#   bash scripts/postgres.sh url        print the URL of the running server (exit 1 if none)
#   bash scripts/postgres.sh stop       stop the server (the data directory is kept)
#   bash scripts/postgres.sh destroy    stop it and delete its data directory
#
# Idempotent: a second `start` finds the running server and prints the same URL.
# PostgreSQL comes from the Debian `postgresql` package (apt-get, as root or with sudo).
# The cluster lives in $SENTINEL_PG_DIR (default /tmp/entropy-sentinel-pg), listens on
# 127.0.0.1 only, on a free port chosen at first start, with `trust` authentication:
# it is a test fixture, never a deployment.
set -euo pipefail

cmd="${1:-start}"
dir="${SENTINEL_PG_DIR:-/tmp/entropy-sentinel-pg}"
db="sentinel"

log() { echo "postgres.sh: $*" >&2; }

find_bindir() {
    local d
    d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
    if [ -n "$d" ] && [ -x "$d/initdb" ]; then echo "$d"; fi
}

install_postgres() {
    log "PostgreSQL not found: installing the Debian package 'postgresql'"
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || { log "need root or sudo to apt-get install postgresql"; exit 1; }
        sudo="sudo"
    fi
    $sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >&2
}

# Run a PostgreSQL program as the cluster owner: `postgres` when we are root
# (initdb refuses to run as root), else ourselves.
as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

port_in_use() {
    python3 - "$1" <<'EOF'
import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(0)
sys.exit(1)
EOF
}

url() { echo "postgresql+psycopg://postgres@127.0.0.1:$(cat "$dir/port")/$db"; }

is_running() {
    [ -f "$dir/port" ] && [ -n "${bindir:-}" ] \
        && "$bindir/pg_isready" -q -h 127.0.0.1 -p "$(cat "$dir/port")" -d postgres -U postgres \
        && as_owner "$bindir/pg_ctl" -D "$dir/data" status >/dev/null 2>&1
}

start() {
    bindir="$(find_bindir)"
    [ -n "$bindir" ] || { install_postgres; bindir="$(find_bindir)"; }
    [ -n "$bindir" ] || { log "initdb still not found after installing postgresql"; exit 1; }
    mkdir -p "$dir"
    exec 9>"$dir.lock"
    flock 9  # one start at a time (parallel CI steps); the server must not inherit fd 9
    if is_running; then
        return 0
    fi
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        log "initialising a throwaway cluster in $dir/data"
        rm -rf "$dir/data"
        mkdir -p "$dir/data"
        [ "$(id -u)" -ne 0 ] || chown -R postgres: "$dir"
        as_owner "$bindir/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C \
            >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
    fi
    if [ ! -f "$dir/port" ] || port_in_use "$(cat "$dir/port")"; then
        free_port >"$dir/port"
    fi
    [ "$(id -u)" -ne 0 ] || chown postgres: "$dir" "$dir/port"
    log "starting PostgreSQL ($bindir) on 127.0.0.1:$(cat "$dir/port")"
    as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $(cat "$dir/port") -c unix_socket_directories='' \
            -c max_connections=200" start >&2 9>&- \
        || { tail -n 20 "$dir/server.log" >&2; exit 1; }
    if ! "$bindir/psql" -h 127.0.0.1 -p "$(cat "$dir/port")" -U postgres -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1; then
        "$bindir/createdb" -h 127.0.0.1 -p "$(cat "$dir/port")" -U postgres "$db"
    fi
}

case "$cmd" in
    start)
        start
        url
        ;;
    env)
        start
        echo "export SENTINEL_TEST_POSTGRES_URL='$(url)'"
        ;;
    url)
        bindir="$(find_bindir)"
        is_running || { log "no server running in $dir (run: bash scripts/postgres.sh start)"; exit 1; }
        url
        ;;
    stop | destroy)
        bindir="$(find_bindir)"
        if [ -n "$bindir" ] && [ -f "$dir/data/PG_VERSION" ]; then
            as_owner "$bindir/pg_ctl" -D "$dir/data" -m fast stop >&2 2>/dev/null || true
        fi
        if [ "$cmd" = destroy ]; then rm -rf "$dir" "$dir.lock"; fi
        ;;
    *)
        echo "usage: bash scripts/postgres.sh [start|env|url|stop|destroy]" >&2
        exit 2
        ;;
esac
