#!/usr/bin/env bash
# Install everything the test suite needs, then run ruff, mypy and pytest.
#   bash scripts/test.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh model,collect,service,dev
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
echo "==> pytest"
.venv/bin/pytest "$@"
