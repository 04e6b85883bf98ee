#!/usr/bin/env bash
# Install everything the test suite needs, then run ruff, mypy and pytest.
#   bash scripts/test.sh [pytest arguments]
# Starts (or finds) PostgreSQL (scripts/postgres.sh) and Phoenix (scripts/phoenix.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh model,collect,service,spark,client,otel,dev
echo "==> ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "==> mypy"
.venv/bin/mypy
echo "==> PostgreSQL (for the storage tests marked postgres)"
if [ -z "${SENTINEL_TEST_POSTGRES_URL:-}" ]; then
    eval "$(bash scripts/postgres.sh env)"  # installs it from Debian packages if missing
fi
export SENTINEL_TEST_POSTGRES_URL
echo "==> Arize Phoenix (the OTLP receiver of tests/test_otel_phoenix.py; its own virtualenv)"
if [ -z "${SENTINEL_TEST_PHOENIX_URL:-}" ]; then
    eval "$(bash scripts/phoenix.sh env)"  # installs arize-phoenix on first use (~1-4 min)
fi
export SENTINEL_TEST_PHOENIX_URL
echo "==> Chromium (for the dashboard test, driven by Playwright; no browser download)"
if [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "    /usr/bin/chromium is missing (apt-get install chromium as root); the browser test will skip"
    fi
fi
echo "==> pytest"
.venv/bin/pytest "$@"
