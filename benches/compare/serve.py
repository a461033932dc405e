"""The reference side of a paired-round bench (`benches/common/mod.rs`, `Reference`).

A reference script prints one JSON line (its figures that need no timing, e.g. eval
logits), then calls `serve` with its timed actions: each line the bench sends,
`NAME COUNT`, runs action NAME COUNT times and answers one JSON line, `{"seconds": S}`:
for `single` the median seconds of COUNT calls after two untimed ones, for any other
action the mean seconds per call over COUNT calls. Running until the bench closes stdin
lets the bench time its side and this one's alternately, so that the machine's drift hits
both sides of a ratio alike.
"""
import json
import sys
import time


def reply(value):
    """One JSON line to the bench."""
    print(json.dumps(value), flush=True)


def median_call(warmup, calls, f):
    """The median seconds of `calls` calls of `f` after `warmup` untimed ones."""
    for _ in range(warmup):
        f()
    seconds = []
    for _ in range(calls):
        start = time.perf_counter()
        f()
        seconds.append(time.perf_counter() - start)
    return sorted(seconds)[len(seconds) // 2]


def mean_call(calls, f):
    """Mean seconds per call of `f` over `calls` calls."""
    start = time.perf_counter()
    for _ in range(calls):
        f()
    return (time.perf_counter() - start) / calls


def serve(actions):
    """Answers the bench's commands until stdin closes; `actions` maps names to pairs
    of functions of no argument: an untimed preparation (e.g. `model.eval`), run once
    per command, and the timed call."""
    for line in sys.stdin:
        name, count = line.split()
        prepare, action = actions[name]
        prepare()
        if name == "single":
            seconds = median_call(2, int(count), action)
        else:
            seconds = mean_call(int(count), action)
        reply({"seconds": seconds})
