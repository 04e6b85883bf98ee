#!/usr/bin/env bash
# Install entropy-sentinel, then run the demo.
#   bash scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh model,collect,service
exec .venv/bin/python scripts/demo.py "$@"
