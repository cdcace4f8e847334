#!/usr/bin/env bash
# Set everything up (system packages, .venv, vmcorefs with its test extra),
# then run the whole test suite on real FUSE mounts.
set -euo pipefail
cd "$(dirname "$0")/.."
bash contrib/setup.sh test
exec .venv/bin/python -m pytest -q "$@"
