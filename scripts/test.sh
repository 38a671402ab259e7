#!/usr/bin/env bash
# The test command of the README: installs rankbias with its test extras, runs the default suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -e ".[test]"
python3 -m pytest -q "$@"
