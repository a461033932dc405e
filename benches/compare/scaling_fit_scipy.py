"""The scipy reference for the scaling-fit benchmark (benches/scaling_fit.rs).

Same procedure as noether-scaling: the Chinchilla form ln L = LSE(a - alpha ln N,
b - beta ln D, e), summed Huber (delta 1e-3) on log residuals, the 4,500-start grid
(alpha, beta in 0..2 step 0.5; e in -1..1 step 0.5; a, b in 0..25 step 5) refined with
L-BFGS-B and analytic gradients, then bootstrap refits (rows resampled with replacement)
each started from the full-data optimum. Single process, as scipy runs it.

Usage: python3 scaling_fit_scipy.py besiroglu_svg_extracted_data.csv [BOOTSTRAP]
Prints `scipy fit_seconds=... bootstrap_seconds=... total_seconds=... objective=... alpha=... beta=...`.
"""
import itertools
import sys
import time

import numpy as np
from scipy.optimize import minimize
from scipy.special import logsumexp

DELTA = 1e-3


def objective(theta, log_n, log_d, log_l):
    a, b, e, alpha, beta = theta
    terms = np.stack([a - alpha * log_n, b - beta * log_d, np.full_like(log_n, e)])
    pred = logsumexp(terms, axis=0)
    w = np.exp(terms - pred)
    r = pred - log_l
    small = np.abs(r) <= DELTA
    value = np.where(small, 0.5 * r * r, DELTA * (np.abs(r) - 0.5 * DELTA)).sum()
    slope = np.where(small, r, DELTA * np.sign(r))
    grad = np.array([
        (slope * w[0]).sum(),
        (slope * w[1]).sum(),
        (slope * w[2]).sum(),
        -(slope * w[0] * log_n).sum(),
        -(slope * w[1] * log_d).sum(),
    ])
    return value, grad


def fit_from(start, data):
    res = minimize(objective, start, args=data, jac=True, method="L-BFGS-B",
                   options={"maxiter": 1000, "gtol": 1e-10, "ftol": 1e-14})
    return res.fun, res.x


def main():
    import pandas as pd
    frame = pd.read_csv(sys.argv[1])
    n_boot = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    frame["D"] = frame["Training FLOP"] / (6 * frame["Model Size"])
    frame = frame.sort_values("loss").iloc[:-5]
    data = (np.log(frame["Model Size"].values), np.log(frame["D"].values), np.log(frame["loss"].values))

    t0 = time.perf_counter()
    grid = itertools.product(np.arange(0, 30, 5), np.arange(0, 30, 5), np.arange(-1, 1.5, 0.5),
                             np.arange(0, 2.5, 0.5), np.arange(0, 2.5, 0.5))
    best = min((fit_from(np.array(s, dtype=float), data) for s in grid), key=lambda r: r[0])
    t1 = time.perf_counter()

    rng = np.random.default_rng(0)
    rows = len(data[0])
    alphas = []
    for _ in range(n_boot):
        idx = rng.integers(0, rows, rows)
        _, x = fit_from(best[1], tuple(d[idx] for d in data))
        alphas.append(x[3])
    t2 = time.perf_counter()
    print(f"scipy fit_seconds={t1 - t0:.3f} bootstrap_seconds={t2 - t1:.3f} total_seconds={t2 - t0:.3f} "
          f"objective={best[0]:.7f} alpha={best[1][3]:.4f} beta={best[1][4]:.4f} se_alpha={np.std(alphas, ddof=1):.4f}")


if __name__ == "__main__":
    main()
