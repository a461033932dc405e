"""PyTorch LorentzNet, written as the authors' reference implementation is (edge lists,
gathers and segment sums; github.com/sdogsq/LorentzNet-release), used as the speed
reference for `cargo bench --bench model_compare`.

Usage: lorentznet_torch.py CHECKPOINT PARITY_H5 INPUTS_BIN THREADS
  - verifies the model against the official logits in PARITY_H5 (each jet alone);
  - reads the padded batch written by the Rust bench (INPUTS_BIN: little-endian header
    of 3 u32 (batch, nodes, single_nodes), then f32 momenta [batch, nodes, 4],
    mask [batch, nodes], labels [batch], single-jet momenta [single_nodes, 4]);
  - prints one JSON line: parity error, eval logits of the batch (for the
    cross-check), the torch version; then serves the bench's paired rounds
    (`serve.py`): `single` (a single-jet inference, eval mode, no autograd), `train` and
    `warmup` (a training step on the batch: forward in train mode + backward + AdamW).
Run by hand (needs torch, safetensors, h5py); CI never runs it.
"""
import sys

import h5py
import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn

from serve import reply, serve


def psi(p):
    return torch.sign(p) * torch.log(torch.abs(p) + 1)


def dot4(p, q):
    return 2 * p[..., 0] * q[..., 0] - (p * q).sum(-1)


class LGEB(nn.Module):
    def __init__(self, n_hidden, n_scalar, c_weight, last_layer):
        super().__init__()
        self.c_weight, self.last_layer = c_weight, last_layer
        self.phi_e = nn.Sequential(
            nn.Linear(2 * n_hidden + 2, n_hidden, bias=False), nn.BatchNorm1d(n_hidden),
            nn.ReLU(), nn.Linear(n_hidden, n_hidden), nn.ReLU())
        self.phi_h = nn.Sequential(
            nn.Linear(2 * n_hidden + n_scalar, n_hidden), nn.BatchNorm1d(n_hidden),
            nn.ReLU(), nn.Linear(n_hidden, n_hidden))
        self.phi_m = nn.Sequential(nn.Linear(n_hidden, 1), nn.Sigmoid())
        if not last_layer:
            self.phi_x = nn.Sequential(
                nn.Linear(n_hidden, n_hidden), nn.ReLU(), nn.Linear(n_hidden, 1, bias=False))

    def forward(self, h, x, edges, edge_mask, scalars):
        i, j = edges
        x_diff = x[i] - x[j]
        norms = psi(dot4(x_diff, x_diff)).unsqueeze(1)
        dots = psi(dot4(x[i], x[j])).unsqueeze(1)
        m = self.phi_e(torch.cat([h[i], h[j], norms, dots], dim=1))
        m = m * self.phi_m(m) * edge_mask
        n = h.size(0)
        if not self.last_layer:
            trans = torch.clamp(x_diff * self.phi_x(m), -100, 100) * edge_mask
            count = torch.zeros(n, 1).index_add_(0, i, edge_mask).clamp(min=1)
            x = x + torch.zeros_like(x).index_add_(0, i, trans) / count * self.c_weight
        agg = torch.zeros(n, m.size(1)).index_add_(0, i, m)
        h = h + self.phi_h(torch.cat([h, agg, scalars], dim=1))
        return h, x


class LorentzNet(nn.Module):
    def __init__(self, n_scalar=2, n_hidden=72, n_class=2, n_layers=6, c_weight=0.005,
                 dropout=0.2):
        super().__init__()
        self.embedding = nn.Linear(n_scalar, n_hidden)
        self.LGEBs = nn.ModuleList([
            LGEB(n_hidden, n_scalar, c_weight, i == n_layers - 1) for i in range(n_layers)])
        self.graph_dec = nn.Sequential(
            nn.Linear(n_hidden, n_hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(n_hidden, n_class))

    def forward(self, momenta, mask, beams=2):
        """momenta [B, N, 4], mask [B, N] (beams first)."""
        b, n, _ = momenta.shape
        idx = torch.arange(n)
        one_hot = torch.zeros(b, n, 2)
        mass = torch.sqrt(torch.abs(dot4(momenta, momenta)))
        one_hot[:, :, 0] = mass * (idx >= beams)
        one_hot[:, :, 1] = mass * (idx < beams)
        scalars = (psi(one_hot) * mask.unsqueeze(-1)).reshape(b * n, 2)
        ii, jj = torch.meshgrid(idx, idx, indexing="ij")
        off = ii != jj
        ii, jj = ii[off], jj[off]
        offset = (torch.arange(b) * n).unsqueeze(1)
        edges = ((ii + offset).reshape(-1), (jj + offset).reshape(-1))
        flat_mask = mask.reshape(-1)
        edge_mask = (flat_mask[edges[0]] * flat_mask[edges[1]]).unsqueeze(1)
        h = self.embedding(scalars)
        x = momenta.reshape(b * n, 4)
        for block in self.LGEBs:
            h, x = block(h, x, edges, edge_mask, scalars)
        h = (h * flat_mask.unsqueeze(1)).reshape(b, n, -1)
        pooled = h.sum(1) / mask.sum(1, keepdim=True)
        return self.graph_dec(pooled)


def load(checkpoint):
    model = LorentzNet()
    state = {k.removeprefix("module."): v for k, v in load_file(checkpoint).items()}
    model.load_state_dict(state)
    return model


def parity_error(model, path):
    worst = 0.0
    with h5py.File(path) as f:
        nobj, pmu, logits = f["Nobj"][:], f["Pmu"][:], f["logits"][:]
    s2 = np.sqrt(2.0)
    model.eval()
    with torch.no_grad():
        for k in range(len(nobj)):
            jet = pmu[k, : nobj[k]].astype(np.float32)
            nodes = np.concatenate([[[s2, 0, 0, 1], [s2, 0, 0, -1]], jet]).astype(np.float32)
            out = model(torch.from_numpy(nodes)[None], torch.ones(1, len(nodes)))[0].numpy()
            rel = np.abs(out - logits[k]) / np.maximum(np.abs(logits[k]), 1e-6)
            worst = max(worst, float(rel.max()))
    return worst


def read_inputs(path):
    raw = open(path, "rb").read()
    batch, nodes, single = np.frombuffer(raw[:12], dtype="<u4")
    data = np.frombuffer(raw[12:], dtype="<f4")
    k = batch * nodes * 4
    momenta = data[:k].reshape(batch, nodes, 4)
    mask = data[k : k + batch * nodes].reshape(batch, nodes)
    labels = data[k + batch * nodes : k + batch * nodes + batch]
    jet = data[k + batch * nodes + batch :].reshape(single, 4)
    return [torch.from_numpy(a.copy()) for a in (momenta, mask, labels, jet)]


def main():
    checkpoint, parity, inputs, threads = sys.argv[1:5]
    torch.set_num_threads(int(threads))
    torch.manual_seed(0)
    model = load(checkpoint)
    result = {"parity_max_rel_err": parity_error(model, parity), "threads": int(threads)}
    momenta, mask, labels, jet = read_inputs(inputs)
    with torch.no_grad():
        result["batch_logits"] = model(momenta, mask).flatten().tolist()
    result["torch"] = torch.__version__
    reply(result)
    # Single-jet inference: eval mode, no autograd.
    single_mask = torch.ones(1, jet.shape[0])

    def single():
        with torch.no_grad():
            model(jet[None], single_mask)

    # Training: forward (train mode) + backward + AdamW step on the batch.
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    target = labels.long()

    def step():
        opt.zero_grad()
        loss = loss_fn(model(momenta, mask), target)
        loss.backward()
        opt.step()

    serve(
        {
            "single": (model.eval, single),
            "train": (model.train, step),
            "warmup": (model.train, step),
        }
    )


if __name__ == "__main__":
    main()
