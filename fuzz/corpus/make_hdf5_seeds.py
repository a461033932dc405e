"""Writes the HDF5 seed corpus of the fuzzer: one small valid file per layout noether
reads, each holding the first 6 jets of the bundled data/test.h5 (10 constituents at
most), as the tool that defines the layout writes it.

Run once from this directory (needs h5py, numpy, pandas, tables):
    python3 make_hdf5_seeds.py
The files are committed; the fuzzer and CI need only cargo.
"""
import h5py
import numpy as np
import pandas as pd

N, K = 6, 10
with h5py.File("../../data/test.h5", "r") as f:
    offsets = f["offsets"][: N + 1]
    constituents = f["constituents"][: offsets[-1]]
    labels = f["labels"][:N]
jets = [constituents[offsets[i] : offsets[i + 1]][:K] for i in range(N)]

# noether's ragged layout (as `noether convert` writes it).
with h5py.File("hdf5/ragged.h5", "w") as f:
    flat = np.concatenate(jets).astype(np.float32)
    offs = np.concatenate([[0], np.cumsum([len(j) for j in jets])]).astype(np.int64)
    f.create_dataset("constituents", data=flat, chunks=(16, 4), shuffle=True, compression="gzip")
    f.create_dataset("offsets", data=offs)
    f.create_dataset("labels", data=labels.astype(np.int8))
    f.create_dataset("multiplicity", data=np.diff(offs).astype(np.int32))
    f.attrs["noether_layout"] = "ragged"
    f.attrs["noether_layout_version"] = np.int64(1)

# LorentzNet's converted files: Pmu (N, M, 4), Nobj, is_signal.
pmu = np.zeros((N, K, 4), dtype=np.float32)
for i, j in enumerate(jets):
    pmu[i, : len(j)] = j
with h5py.File("hdf5/lorentznet.h5", "w") as f:
    f.create_dataset("Pmu", data=pmu)
    f.create_dataset("Nobj", data=np.array([len(j) for j in jets], dtype=np.int16))
    f.create_dataset("is_signal", data=labels.astype(np.int8))

# The Top Tagging Reference Dataset, as pandas writes it (table and fixed formats).
columns = {}
for c in range(K):
    for k, name in enumerate(["E", "PX", "PY", "PZ"]):
        columns[f"{name}_{c}"] = [float(j[c, k]) if c < len(j) else 0.0 for j in jets]
columns["is_signal_new"] = labels.astype(np.int64)
frame = pd.DataFrame(columns)
frame.to_hdf("hdf5/toptag_table.h5", key="table", format="table")
frame.to_hdf("hdf5/toptag_fixed.h5", key="table", format="fixed")

# JetNet: particle_features (N, 30, 4) = (eta_rel, phi_rel, pt_rel, mask), jet_features.
pf = np.zeros((N, 30, 4), dtype=np.float32)
jf = np.zeros((N, 4), dtype=np.float32)
for i, j in enumerate(jets):
    e, px, py, pz = (j[:, k].astype(np.float64) for k in range(4))
    pt = np.hypot(px, py)
    eta = np.arcsinh(pz / pt)
    phi = np.arctan2(py, px)
    jpt, jeta, jphi = pt.sum(), np.arcsinh(pz.sum() / np.hypot(px.sum(), py.sum())), np.arctan2(py.sum(), px.sum())
    pf[i, : len(j)] = np.stack([eta - jeta, phi - jphi, pt / jpt, np.ones(len(j))], axis=1)
    jf[i] = [jpt, jeta, 0.0, len(j)]
with h5py.File("hdf5/jetnet.h5", "w") as f:
    f.create_dataset("particle_features", data=pf, compression="gzip")
    f.create_dataset("jet_features", data=jf)

# LHC Olympics: one row per event, K x (pT, eta, phi) and a label, pandas fixed.
rows = []
for i, j in enumerate(jets):
    e, px, py, pz = (j[:, k].astype(np.float64) for k in range(4))
    pt = np.hypot(px, py)
    row = np.zeros(3 * K + 1)
    row[: 3 * len(j)] = np.stack([pt, np.arcsinh(pz / pt), np.arctan2(py, px)], axis=1).ravel()
    row[-1] = labels[i]
    rows.append(row)
pd.DataFrame(np.array(rows)).to_hdf("hdf5/lhco.h5", key="df", format="fixed")
