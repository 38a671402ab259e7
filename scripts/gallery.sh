#!/usr/bin/env bash
# Regenerates the reproductions gallery: runs every named reproduction (full by default,
# `--quick` for the reduced versions), then copies its PNG figures (shrunk below 200 KB) and a
# record (summary, date, rankbias version, mode, wall time) into docs/gallery/figures/.
#   bash scripts/gallery.sh [--quick] [EXPERIMENT ...]      (default: every reproduction)
#   MOVIELENS_DATA=ratings-file bash scripts/gallery.sh movielens   (the data is not shipped)
set -euo pipefail
cd "$(dirname "$0")/.."
mode=full; flag=()
if [ "${1:-}" = "--quick" ]; then mode=quick; flag=(--quick); shift; fi
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
  names=(paper2-examples paper2-depth-sweep paper2-early-stopping paper2-beyond
         paper1-staircase paper1-calibration paper1-counterexamples paper1-sensing-recovery
         paper1-figure5 arora2019-completion optimizers-vs-flow diagonal-saddles)
  # movielens runs on a ratings file that cannot be shipped: only when one is given
  if [ -n "${MOVIELENS_DATA:-}" ]; then names+=(movielens); fi
fi
for name in "${names[@]}"; do
  out="results/gallery-$mode/$name"
  echo "== $name ($mode) -> $out"
  start=$(date +%s)
  data=()
  if [ "$name" = movielens ]; then
    data=(--data "${MOVIELENS_DATA:?set MOVIELENS_DATA to a ratings file, e.g. ml-100k/u.data}")
  fi
  rankbias run "$name" --out "$out" --no-progress "${flag[@]}" "${data[@]}"
  python3 scripts/gallery_collect.py "$name" "$out" "$mode" "$(( $(date +%s) - start ))"
done
