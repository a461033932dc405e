"""Boosted top and QCD jets for the boost-generalisation test of the data-scaling study:
the recipe of the shared toptag-pythia set (Pythia 8 + FastJet, pp at 14 TeV, particle
level, multiparton interactions off, default tune, anti-kT R = 0.8, |eta| < 2), at
1000 < pT < 1200 GeV instead of 550-650 GeV.

    pip install pythia8mc fastjet h5py numpy   # binary wheels for CPython 3.11
    python3 tools/make_boosted_jets.py --jets 10000 --seed 1 --out data/boosted_test.h5

Signal: hadronic tops from ttbar (W -> quarks forced), a jet kept when the top and its
three decay quarks lie within Delta R = 0.8 of the jet axis (the Top Quark Tagging
Reference's containment, arXiv:1902.09914). Background: QCD 2 -> 2, the leading jets in
the window. Written in the layout of the shared files (`Nobj`, `Pmu` (N, 200, 4) E, px,
py, pz in GeV, pT-ordered and zero-padded; `is_signal`; `truth_Pmu`), which noether reads
directly, chunked and gzip-compressed like them; half signal, half background, shuffled
with the seed. pTHat in [820, 1380] GeV: the shared set's window [450, 750] around its
550-650 GeV jets, scaled to 1000-1200 GeV.
"""

import argparse
from importlib import metadata
import math

import fastjet
import h5py
import numpy as np
import pythia8mc as pythia8

PT_MIN, PT_MAX, ETA_MAX, R = 1000.0, 1200.0, 2.0, 0.8
MAX_PARTICLES = 200


def pythia(process, seed):
    p = pythia8.Pythia("", False)
    for line in [
        "Beams:eCM = 14000.",
        "PartonLevel:MPI = off",
        "PhaseSpace:pTHatMin = 820.",
        "PhaseSpace:pTHatMax = 1380.",
        "Random:setSeed = on",
        f"Random:seed = {seed}",
        "Next:numberCount = 0",
        "Print:quiet = on",
    ] + process:
        p.readString(line)
    p.init()
    return p


SIGNAL = ["Top:gg2ttbar = on", "Top:qqbar2ttbar = on", "24:onMode = off", "24:onIfAny = 1 2 3 4 5"]
BACKGROUND = ["HardQCD:all = on"]


def delta_r(eta1, phi1, eta2, phi2):
    dphi = (phi1 - phi2 + math.pi) % (2 * math.pi) - math.pi
    return math.hypot(eta1 - eta2, dphi)


def eta_phi(px, py, pz):
    pt = math.hypot(px, py)
    return math.asinh(pz / pt), math.atan2(py, px)


def hadronic_tops(event):
    """(top four-momentum, [b, q, q'] (eta, phi)) of every top whose W decays to quarks."""
    tops = []
    for i in range(event.size()):
        part = event[i]
        if abs(part.id()) != 6:
            continue
        daughters = [event[d] for d in part.daughterList()]
        if any(abs(d.id()) == 6 for d in daughters):
            continue  # not the last top in the chain
        b = [d for d in daughters if abs(d.id()) == 5]
        w = [d for d in daughters if abs(d.id()) == 24]
        if not b or not w:
            continue
        wl = w[0]
        while any(abs(event[d].id()) == 24 for d in wl.daughterList()):
            wl = next(event[d] for d in wl.daughterList() if abs(event[d].id()) == 24)
        quarks = [event[d] for d in wl.daughterList() if 1 <= abs(event[d].id()) <= 5]
        if len(quarks) != 2:
            continue
        tops.append(
            (
                (part.e(), part.px(), part.py(), part.pz()),
                [eta_phi(q.px(), q.py(), q.pz()) for q in [b[0]] + quarks],
            )
        )
    return tops


def jets_of(event):
    particles = [
        fastjet.PseudoJet(event[i].px(), event[i].py(), event[i].pz(), event[i].e())
        for i in range(event.size())
        if event[i].isFinal() and abs(event[i].id()) not in (12, 14, 16)
    ]
    sequence = fastjet.ClusterSequence(particles, fastjet.JetDefinition(fastjet.antikt_algorithm, R))
    jets = [j for j in fastjet.sorted_by_pt(sequence.inclusive_jets(PT_MIN)) if PT_MIN < j.pt() < PT_MAX and abs(j.eta()) < ETA_MAX]
    return jets, sequence


def constituents(jet):
    parts = sorted(jet.constituents(), key=lambda c: -c.pt())[:MAX_PARTICLES]
    out = np.zeros((MAX_PARTICLES, 4), dtype=np.float32)
    for k, c in enumerate(parts):
        out[k] = (c.e(), c.px(), c.py(), c.pz())
    return out, len(parts)


def generate(n_per_class, seed):
    rows = {1: [], 0: []}
    gens = {1: pythia(SIGNAL, seed), 0: pythia(BACKGROUND, seed + 1)}
    for label, gen in gens.items():
        while len(rows[label]) < n_per_class:
            if not gen.next():
                continue
            jets, _sequence = jets_of(gen.event)
            tops = hadronic_tops(gen.event) if label == 1 else []
            for jet in jets:
                truth = np.zeros(4, dtype=np.float32)
                if label == 1:
                    matched = [
                        t for t, quarks in tops
                        if delta_r(jet.eta(), jet.phi_std(), *eta_phi(*t[1:])) < R
                        and all(delta_r(jet.eta(), jet.phi_std(), e, p) < R for e, p in quarks)
                    ]
                    if not matched:
                        continue
                    truth[:] = matched[0]
                pmu, n = constituents(jet)
                rows[label].append((pmu, n, truth))
                if len(rows[label]) >= n_per_class:
                    break
    jets = [(rows[label][k], label) for k in range(n_per_class) for label in (1, 0)]
    permutation = np.random.default_rng(seed).permutation(len(jets))
    jets = [jets[i] for i in permutation]
    return [row for row, _ in jets], np.array([label for _, label in jets], dtype=np.int8)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jets", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default="data/boosted_test.h5")
    args = ap.parse_args()
    rows, labels = generate(args.jets // 2, args.seed)
    with h5py.File(args.out + ".partial", "w") as f:
        f.attrs["generator"] = (
            f"Pythia {metadata.version('pythia8mc')} + FastJet {metadata.version('fastjet')}, pp 14 TeV, "
            f"particle level, MPI off, anti-kT R=0.8, {PT_MIN:.0f}<pT<{PT_MAX:.0f} GeV, |eta|<{ETA_MAX:.0f}, seed {args.seed}"
        )
        f["Nobj"] = np.array([n for _, n, _ in rows], dtype=np.int16)
        f.create_dataset(
            "Pmu",
            data=np.stack([p for p, _, _ in rows]),
            chunks=(min(1000, len(rows)), MAX_PARTICLES, 4),
            compression="gzip",
            compression_opts=4,
            shuffle=True,
        )
        f["is_signal"] = labels
        f["truth_Pmu"] = np.stack([t for _, _, t in rows])
    import os

    os.replace(args.out + ".partial", args.out)
    print(f"wrote {args.out}: {len(rows)} jets")


if __name__ == "__main__":
    main()
