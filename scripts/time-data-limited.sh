#!/usr/bin/env bash
# The data-limited study's wall time, two ways (README, "Sweeps"): its 48 trials
# (`sweeps/data_limited.toml`) run through the local pool as
#   parallel: noether sweep submit DIR --scheduler local --parallel 2 --threads 1
#   serial:   noether sweep submit DIR --scheduler local --parallel 1 --threads 2
# each from a fresh plan, timed end to end, one arm per call (each takes one to two
# hours on a 2-core machine; run it with the machine otherwise idle). A line per arm is
# appended to OUT (default studies/data_limited_walltime/walltime.tsv); an interrupted
# arm is started again from scratch, since its wall time would not mean anything.
#
#   scripts/time-data-limited.sh parallel|serial [OUT]
#
# SWEEP=FILE times another sweep file the same way (sweeps/smoke.toml: a check of the
# script in a minute).
set -euo pipefail
cd "$(dirname "$0")/.."

arm=${1:-}
out=${2:-studies/data_limited_walltime/walltime.tsv}
case "$arm" in
    parallel) parallel=2 threads=1 ;;
    serial) parallel=1 threads=2 ;;
    *)
        echo "usage: $0 parallel|serial [OUT]" >&2
        exit 2
        ;;
esac

noether=target/release/noether
if [ ! -x "$noether" ]; then
    echo "error: $noether not found: run cargo build --release first" >&2
    exit 1
fi
sweep=${SWEEP:-sweeps/data_limited.toml}
dir=runs/$(basename "$sweep" .toml)_walltime_$arm
rm -rf "$dir"
"$noether" sweep plan "$sweep" --out "$dir" >/dev/null
trials=$(wc -l <"$dir/manifest.jsonl")

start=$(date +%s.%N)
"$noether" sweep submit "$dir" --scheduler local --parallel "$parallel" --threads "$threads"
end=$(date +%s.%N)
"$noether" sweep collect "$dir" >/dev/null

done_trials=$( (grep -l '"done"' "$dir"/runs/*/trial.json || true) | wc -l)
seconds=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
mkdir -p "$(dirname "$out")"
if [ ! -s "$out" ]; then
    printf 'sweep\tarm\tparallel\tthreads\ttrials\tdone\tseconds\tstarted_utc\tcommit\tcores\tcpu\n' >"$out"
fi
printf '%s\t%s\t%s\t%s\t%s\t%s\t%.0f\t%s\t%s\t%s\t%s\n' "$sweep" "$arm" "$parallel" "$threads" \
    "$trials" "$done_trials" "$seconds" "$(date -u -d "@${start%.*}" +%FT%TZ)" \
    "$(git rev-parse --short HEAD)" "$(nproc)" \
    "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')" >>"$out"
echo "$arm: $trials trials ($done_trials done) in $seconds s; appended to $out"
