#!/usr/bin/env bash
# Keeps a sweep's results in git without its checkpoints, so that a long study survives
# the machine it ran on and resumes elsewhere:
#   scripts/archive-sweep.sh runs/data_scaling studies/data_scaling   # after trials finish
#   scripts/archive-sweep.sh studies/data_scaling runs/data_scaling   # on a new machine
# Copies the plan (manifest.jsonl, sweep.json) and, of every finished trial (one with a
# metrics.json), config.toml, metrics.json, history.csv/json and trial.json. A finished
# trial needs nothing else: `sweep run` skips it and `sweep collect` reads it. Running
# and unfinished trials are left out (they restart from scratch where they are resumed).
set -euo pipefail

[[ $# -eq 2 ]] || { echo "usage: $0 SWEEP_DIR DEST_DIR" >&2; exit 2; }
src="$1" dst="$2"
[[ -f "$src/manifest.jsonl" ]] || { echo "$0: $src/manifest.jsonl: no sweep planned there" >&2; exit 1; }

mkdir -p "$dst/runs"
cp "$src/manifest.jsonl" "$src/sweep.json" "$dst/"
copied=0
for metrics in "$src"/runs/*/metrics.json; do
    [[ -e "$metrics" ]] || continue
    trial="$(dirname "$metrics")"
    out="$dst/runs/$(basename "$trial")"
    mkdir -p "$out"
    for file in config.toml metrics.json history.csv history.json trial.json; do
        [[ -f "$trial/$file" ]] && cp "$trial/$file" "$out/"
    done
    copied=$((copied + 1))
done
echo "archived $copied finished trials of $src in $dst"
