#!/usr/bin/env bash
# Keeps a sweep's results in git, so that a long study survives the machine it ran on
# and resumes elsewhere:
#   scripts/archive-sweep.sh runs/data_scaling studies/data_scaling   # as trials progress
#   scripts/archive-sweep.sh studies/data_scaling runs/data_scaling   # on a new machine
# Copies the plan (manifest.jsonl, sweep.json) and, of every finished trial (one with a
# metrics.json), config.toml, metrics.json, history.csv/json and trial.json: a finished
# trial needs nothing else (`sweep run` skips it, `sweep collect` reads it), so its
# checkpoints are left out (and removed from DEST_DIR where an earlier copy of the
# unfinished trial left them). An unfinished trial with a last.safetensors is copied
# with its checkpoints (a few hundred kB for the CPU configs), so that `sweep run`
# resumes it from its last epoch; last.safetensors is copied before best.safetensors and
# history.json, which the trainer writes before and after it, so that a copy taken while
# the trial runs is one it can resume from (a newer history is cut to the checkpoint's
# epoch; a newer best is the one the deterministic rerun of that epoch writes again).
# A DEST_DIR whose plan holds trials that SWEEP_DIR's lacks is refused (the arguments the
# wrong way round would replace a newer plan by an older one); FORCE=1 copies anyway.
set -euo pipefail

[[ $# -eq 2 ]] || { echo "usage: $0 SWEEP_DIR DEST_DIR" >&2; exit 2; }
src="$1" dst="$2"
[[ -f "$src/manifest.jsonl" ]] || { echo "$0: $src/manifest.jsonl: no sweep planned there" >&2; exit 1; }

copy_files() { # trial dir, destination dir, files...
    local from="$1" to="$2"
    shift 2
    for file in "$@"; do
        [[ -f "$from/$file" ]] && cp "$from/$file" "$to/"
    done
    return 0
}

trial_ids() { grep -o '"id":"[0-9a-f]*"' "$1" | sort -u; }
if [[ -f "$dst/manifest.jsonl" && -z "${FORCE:-}" ]]; then
    lost=$(comm -13 <(trial_ids "$src/manifest.jsonl") <(trial_ids "$dst/manifest.jsonl") | wc -l)
    if ((lost > 0)); then
        echo "$0: $dst/manifest.jsonl plans $lost trial(s) that $src/manifest.jsonl lacks;" \
            "the arguments are SWEEP_DIR DEST_DIR (FORCE=1 overwrites the plan)" >&2
        exit 1
    fi
fi

mkdir -p "$dst/runs"
cp "$src/manifest.jsonl" "$src/sweep.json" "$dst/"
finished=0 unfinished=0
for trial in "$src"/runs/*/; do
    trial="${trial%/}"
    [[ -d "$trial" ]] || continue
    out="$dst/runs/$(basename "$trial")"
    if [[ -f "$trial/metrics.json" ]]; then
        mkdir -p "$out"
        copy_files "$trial" "$out" config.toml metrics.json history.csv history.json trial.json
        rm -f "$out/last.safetensors" "$out/best.safetensors"
        finished=$((finished + 1))
    elif [[ -f "$trial/last.safetensors" ]]; then
        mkdir -p "$out"
        copy_files "$trial" "$out" last.safetensors best.safetensors history.json history.csv \
            config.toml trial.json
        unfinished=$((unfinished + 1))
    fi
done
echo "archived $finished finished and $unfinished unfinished trials of $src in $dst"
