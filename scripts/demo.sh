#!/usr/bin/env bash
# The main job of the README: a quick reproduction that writes figures and an HTML report.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -e .
rankbias demo --out "${1:-results/demo}"
