#!/usr/bin/env bash
# A throwaway Arize Phoenix server on loopback (SQLite), the OTLP receiver of the tests.
#
#   bash scripts/phoenix.sh [start]   install if missing, start if not running, print the URL
#   eval "$(bash scripts/phoenix.sh env)"   ... and export SENTINEL_TEST_PHOENIX_URL
#   bash scripts/phoenix.sh url        print the URL of the running server (exit 1 if none)
#   bash scripts/phoenix.sh stop       stop the server (its data directory is kept)
#   bash scripts/phoenix.sh destroy    stop it and delete its directory (and its virtualenv)
#
# Phoenix has many dependencies that may clash with ours, so it lives in its own
# virtualenv ($dir/venv, from PyPI: arize-phoenix==$PHOENIX_VERSION). The server keeps
# its SQLite data in $dir/data and listens on 127.0.0.1 only, on free ports chosen at
# first start: HTTP (UI, REST API, OTLP/HTTP at /v1/traces) and gRPC. Idempotent: a
# second `start` finds the running server and prints the same URL.
set -euo pipefail

cmd="${1:-start}"
dir="${SENTINEL_PHOENIX_DIR:-/tmp/entropy-sentinel-phoenix}"
version="${PHOENIX_VERSION:-20.26.1}"
python="${PYTHON:-python3}"

log() { echo "phoenix.sh: $*" >&2; }

free_port() {
    "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

url() { echo "http://127.0.0.1:$(cat "$dir/port")"; }

is_running() {
    [ -f "$dir/pid" ] && [ -f "$dir/port" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null \
        && curl -sf "$(url)/healthz" >/dev/null 2>&1
}

install() {
    if [ -x "$dir/venv/bin/phoenix" ] && [ "$(cat "$dir/venv/version" 2>/dev/null)" = "$version" ]; then
        return 0
    fi
    log "installing arize-phoenix==$version into $dir/venv (about a minute)"
    rm -rf "$dir/venv"
    "$python" -m venv "$dir/venv"
    PIP_DISABLE_PIP_VERSION_CHECK=1 "$dir/venv/bin/pip" install -q "arize-phoenix==$version" 2>&1 \
        | grep -v "^WARNING: Location" >&2 || true
    [ -x "$dir/venv/bin/phoenix" ] || { log "the install of arize-phoenix failed"; exit 1; }
    echo "$version" >"$dir/venv/version"
}

start() {
    mkdir -p "$dir"
    exec 9>"$dir.lock"
    flock 9  # one start at a time; the server must not inherit fd 9
    install
    if is_running; then
        return 0
    fi
    mkdir -p "$dir/data"
    free_port >"$dir/port"
    free_port >"$dir/grpc_port"
    log "starting Phoenix $version on $(url) (data in $dir/data)"
    PHOENIX_WORKING_DIR="$dir/data" PHOENIX_HOST=127.0.0.1 PHOENIX_PORT="$(cat "$dir/port")" \
        PHOENIX_GRPC_PORT="$(cat "$dir/grpc_port")" PHOENIX_TELEMETRY_ENABLED=false \
        nohup "$dir/venv/bin/phoenix" serve >"$dir/server.log" 2>&1 9>&- &
    echo $! >"$dir/pid"
    for _ in $(seq 1 240); do
        if curl -sf "$(url)/healthz" >/dev/null 2>&1; then
            return 0
        fi
        kill -0 "$(cat "$dir/pid")" 2>/dev/null || break
        sleep 0.5
    done
    tail -n 30 "$dir/server.log" >&2
    log "Phoenix did not become healthy"
    exit 1
}

stop() {
    if [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
        kill "$(cat "$dir/pid")"
        for _ in $(seq 1 40); do
            kill -0 "$(cat "$dir/pid")" 2>/dev/null || break
            sleep 0.25
        done
    fi
    rm -f "$dir/pid"
}

case "$cmd" in
    start)
        start
        url
        ;;
    env)
        start
        echo "export SENTINEL_TEST_PHOENIX_URL='$(url)'"
        ;;
    url)
        is_running || { log "no server running in $dir (run: bash scripts/phoenix.sh start)"; exit 1; }
        url
        ;;
    stop | destroy)
        stop
        if [ "$cmd" = destroy ]; then rm -rf "$dir" "$dir.lock"; fi
        ;;
    *)
        echo "usage: bash scripts/phoenix.sh [start|env|url|stop|destroy]" >&2
        exit 2
        ;;
esac
