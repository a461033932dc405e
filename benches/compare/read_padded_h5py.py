"""The h5py + numpy reference for the data-reading benchmark (benches/data_read.rs).

Same work as the Rust side: read a LorentzNet-layout file (Nobj, Pmu, is_signal) in
windows of 1000 jets and form padded batches of 256 x 200 x 4 with a mask and labels.
Prints one line: `h5py jets_per_s=<rate> seconds=<time> jets=<n>`.

Usage: python3 read_padded_h5py.py FILE [REPEATS]
"""
import sys
import time

import h5py
import numpy as np

BATCH, N_MAX, WINDOW = 256, 200, 1000


def run(path):
    jets = 0
    checksum = 0.0
    with h5py.File(path, "r") as f:
        n = f["Nobj"].shape[0]
        pending_p, pending_m, pending_y = [], [], []
        for start in range(0, n, WINDOW):
            nobj = f["Nobj"][start:start + WINDOW].astype(np.int64)
            pmu = f["Pmu"][start:start + WINDOW, :N_MAX]
            labels = f["is_signal"][start:start + WINDOW]
            mask = (np.arange(N_MAX)[None, :] < nobj[:, None]).astype(np.float32)
            pmu = pmu * mask[:, :, None]
            pending_p.append(pmu)
            pending_m.append(mask)
            pending_y.append(labels)
            p = np.concatenate(pending_p)
            m = np.concatenate(pending_m)
            y = np.concatenate(pending_y)
            full = (len(p) // BATCH) * BATCH
            for b in range(0, full, BATCH):
                batch = np.ascontiguousarray(p[b:b + BATCH])
                checksum += float(batch[:, 0, 0].sum()) + float(m[b:b + BATCH].sum())
                jets += BATCH
            pending_p, pending_m, pending_y = [p[full:]], [m[full:]], [y[full:]]
        jets += len(pending_p[0])
    return jets, checksum


def main():
    path = sys.argv[1]
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        jets, _ = run(path)
        best = min(best, time.perf_counter() - t0)
    print(f"h5py jets_per_s={jets / best:.0f} seconds={best:.3f} jets={jets}")


if __name__ == "__main__":
    main()
