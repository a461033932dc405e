"""PyTorch PELICAN as noether defines it (`crates/equivariant/src/pelican.rs`,
`aggregate.rs`), written as the authors' code is (github.com/abogatskiy/PELICAN: dense
`[B, N, N, C]` pair tensors, the 2->2 basis as diagonals, row/column sums and broadcasts,
masked BatchNorm over the real pairs), used as the speed reference for
`cargo bench --bench model_compare`. Same parameter names as noether's state dict.

Usage: pelican_torch.py WEIGHTS INPUTS THREADS
  - WEIGHTS: noether's PELICAN state dict (safetensors);
  - INPUTS: safetensors with `dots` [B, N, N], `mask` [B, N], `labels` [B, N, 2],
    `targets` [B], and the single jet's `single_dots`, `single_mask`, `single_labels`;
  - prints one JSON line: eval logits of the batch (for the cross-check against
    noether's) and the torch version; then serves the bench's paired rounds
    (`serve.py`): `single` (a single-jet inference, eval, no autograd), `train` and
    `warmup` (a training step on the batch: forward + backward + AdamW).
Run by hand (needs torch, safetensors); CI never runs it.
"""
import sys

import torch
from safetensors.torch import load_file
from torch import nn
import torch.nn.functional as F

from serve import reply, serve


def basis_weight(ops, c_in, c_out):
    bound = 1.0 / (ops * c_in) ** 0.5
    return nn.Parameter(torch.empty(ops, c_in, c_out).uniform_(-bound, bound))


class MaskedBatchNorm(nn.Module):
    """BatchNorm over the last dimension with statistics from the masked entries."""

    def __init__(self, c, eps=1e-5, momentum=0.1):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(c))
        self.bias = nn.Parameter(torch.zeros(c))
        self.register_buffer("running_mean", torch.zeros(c))
        self.register_buffer("running_var", torch.ones(c))
        self.eps, self.momentum = eps, momentum

    def forward(self, x, mask):
        """x [..., C], mask [...] (1 for real entries)."""
        if self.training:
            m = mask.unsqueeze(-1)
            count = mask.sum().clamp(min=1)
            dims = tuple(range(x.dim() - 1))
            mean = (x * m).sum(dims) / count
            var = (((x - mean) ** 2) * m).sum(dims) / count
            with torch.no_grad():
                unbiased = var * (count / (count - 1).clamp(min=1))
                self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean)
                self.running_var.mul_(1 - self.momentum).add_(self.momentum * unbiased)
        else:
            mean, var = self.running_mean, self.running_var
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias


class Message(nn.Module):
    """Per-pair Linear, LeakyReLU, masked BatchNorm."""

    def __init__(self, c_in, c_out):
        super().__init__()
        self.linear = nn.Linear(c_in, c_out)
        self.norm = MaskedBatchNorm(c_out)

    def forward(self, t, pair):
        x = F.leaky_relu(self.linear(t), 0.01)
        return self.norm(x, pair) * pair.unsqueeze(-1)


def scale(log_ratio, alpha):
    """(n / n_avg)^alpha: [B, C]."""
    return torch.exp(log_ratio[:, None] * alpha[None, :])


class Eq2to2(nn.Module):
    """The 15 permutation-equivariant operations on pair tensors, mixed, plus biases."""

    def __init__(self, c_in, c_out):
        super().__init__()
        self.weight = basis_weight(15, c_in, c_out)
        self.bias = nn.Parameter(torch.zeros(c_out))
        self.diag_bias = nn.Parameter(torch.zeros(c_out))
        self.alphas = nn.Parameter(torch.zeros(4, c_in))

    def forward(self, t, pair, count, log_ratio):
        w = self.weight
        n = t.shape[1]
        eye = torch.eye(n, dtype=t.dtype).unsqueeze(-1)
        cnt = count[:, None]
        d = torch.diagonal(t, dim1=1, dim2=2).transpose(1, 2)  # [B, N, C]
        row = t.sum(2) / cnt[:, None] * scale(log_ratio, self.alphas[0])[:, None]
        col = t.sum(1) / cnt[:, None] * scale(log_ratio, self.alphas[1])[:, None]
        tr = d.sum(1) / cnt * scale(log_ratio, self.alphas[2])
        s = t.sum((1, 2)) / cnt**2 * scale(log_ratio, self.alphas[3])
        node_i = d @ w[3] + row @ w[5] + col @ w[6]
        node_j = d @ w[4] + row @ w[7] + col @ w[8]
        node_diag = d @ w[2] + row @ w[9] + col @ w[10]
        jet = tr @ w[11] + s @ w[13] + self.bias
        jet_diag = tr @ w[12] + s @ w[14] + self.diag_bias
        out = (
            t @ w[0]
            + t.transpose(1, 2) @ w[1]
            + node_i[:, :, None]
            + node_j[:, None, :]
            + jet[:, None, None]
            + eye * (node_diag + jet_diag[:, None])[:, :, None]
        )
        return out * pair.unsqueeze(-1)


class Eq1to2(nn.Module):
    """Node labels lifted to pairs: diag l_i, l_i, l_j, mean l, diag mean l."""

    def __init__(self, c_in, c_out):
        super().__init__()
        self.weight = basis_weight(5, c_in, c_out)
        self.bias = nn.Parameter(torch.zeros(c_out))

    def forward(self, l, node, pair, count):
        w = self.weight
        l = l * node.unsqueeze(-1)
        mean = l.sum(1) / count[:, None]
        n = l.shape[1]
        eye = torch.eye(n, dtype=l.dtype).unsqueeze(-1)
        diag = l @ w[0] + (mean @ w[4])[:, None]
        out = (
            (l @ w[1])[:, :, None]
            + (l @ w[2])[:, None, :]
            + (mean @ w[3] + self.bias)[:, None, None]
            + eye * diag[:, :, None]
        )
        return out * pair.unsqueeze(-1)


class Eq2to0(nn.Module):
    """Invariant readout: scaled trace and total means, mixed."""

    def __init__(self, c_in, c_out):
        super().__init__()
        self.weight = basis_weight(2, c_in, c_out)
        self.bias = nn.Parameter(torch.zeros(c_out))
        self.alphas = nn.Parameter(torch.zeros(2, c_in))

    def forward(self, t, count, log_ratio):
        cnt = count[:, None]
        tr = torch.diagonal(t, dim1=1, dim2=2).sum(-1) / cnt
        s = t.sum((1, 2)) / cnt**2
        tr = tr * scale(log_ratio, self.alphas[0])
        s = s * scale(log_ratio, self.alphas[1])
        return tr @ self.weight[0] + s @ self.weight[1] + self.bias


class Pelican(nn.Module):
    def __init__(self, n_embed=10, n_label=2, n_msg=48, n_hidden=60, n_layers=4,
                 n_readout=32, n_class=2, dropout=0.1, n_avg=50.0):
        super().__init__()
        self.n_avg, self.dropout = n_avg, dropout
        self.embed = nn.Module()
        self.embed.alphas = nn.Parameter(torch.empty(n_embed).uniform_(0.05, 0.5))
        self.embed.norm = MaskedBatchNorm(n_embed)
        self.labels = Eq1to2(2, n_label)
        widths = [n_embed + n_label] + [n_hidden] * n_layers
        self.blocks = nn.ModuleList()
        for i in range(n_layers):
            block = nn.Module()
            block.message = Message(widths[i], n_msg)
            block.eq2to2 = Eq2to2(n_msg, n_hidden)
            self.blocks.append(block)
        self.readout = nn.Module()
        self.readout.message = Message(widths[-1], n_msg)
        self.readout.eq2to0 = Eq2to0(n_msg, n_readout)
        self.head = nn.Linear(n_readout, n_class)

    def forward(self, dots, node, labels):
        pair = node[:, :, None] * node[:, None, :]
        count = node.sum(1).clamp(min=1)
        log_ratio = torch.log(count / self.n_avg)
        a2 = self.embed.alphas**2 + 1e-6
        x = dots.unsqueeze(-1)
        embedded = torch.sign(x) * (torch.exp(torch.log1p(x.abs()) * a2) - 1) / a2
        embedded = self.embed.norm(embedded, pair) * pair.unsqueeze(-1)
        t = torch.cat([embedded, self.labels(labels, node, pair, count)], -1)
        for block in self.blocks:
            m = block.message(t, pair)
            t = F.leaky_relu(block.eq2to2(m, pair, count, log_ratio), 0.01)
            t = F.dropout(t, self.dropout, self.training) * pair.unsqueeze(-1)
        m = self.readout.message(t, pair)
        features = F.leaky_relu(self.readout.eq2to0(m, count, log_ratio), 0.01)
        return self.head(features)


def main():
    weights, inputs, threads = sys.argv[1:4]
    torch.set_num_threads(int(threads))
    torch.manual_seed(0)
    state = load_file(weights)
    x = load_file(inputs)
    model = Pelican()
    model.load_state_dict(state)
    model.eval()
    result = {"threads": int(threads), "torch": torch.__version__}
    with torch.no_grad():
        result["batch_logits"] = model(x["dots"], x["mask"], x["labels"]).flatten().tolist()
    reply(result)
    one = (x["single_dots"], x["single_mask"], x["single_labels"])

    def single():
        with torch.no_grad():
            model(*one)

    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    target = x["targets"].long()
    batch = (x["dots"], x["mask"], x["labels"])

    def step():
        opt.zero_grad()
        loss = F.cross_entropy(model(*batch), target)
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
