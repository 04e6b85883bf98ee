#!/usr/bin/env bash
# Install entropy-sentinel, then run the demo.
#   bash scripts/demo.sh [--help] [demo options]
# --help prints the options and installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
for arg in "$@"; do
    case "$arg" in
        -h | --help) exec "${PYTHON:-python3}" scripts/demo.py --help ;;
    esac
done
bash scripts/install.sh model,collect,service
exec .venv/bin/python scripts/demo.py "$@"
