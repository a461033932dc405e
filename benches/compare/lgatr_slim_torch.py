"""The `lgatr` 2.0 package's LGATrSlim on PyTorch, the speed reference for
`cargo bench --bench lgatr_slim_compare`.

Usage: lgatr_slim_torch.py WEIGHTS.safetensors INPUTS_BIN THREADS
  - builds LGATrSlim at the paper's size 0 (32 vector / 128 scalar channels, 8 blocks,
    8 heads, MLP ratio 2; 1 vector and 8 scalar input channels, 2 scalar outputs) and
    loads noether's seeded weights (the package's state-dict keys, strict);
  - reads the tokens written by the Rust bench (INPUTS_BIN: little-endian header of 3 u32
    (jets, tokens, scalars), then f32 vectors [jets, tokens, 4], scalars [jets, tokens,
    scalars], mask [jets, tokens], labels [jets]; then the single jet's header and
    tensors in the same layout without labels);
  - prints one JSON line: eval logits of the batch (class token) and the torch version;
    then serves the bench's paired rounds (`serve.py`): `single` (a single-jet
    inference, eval mode, no_grad), `train` and `warmup` (a training step: forward +
    cross-entropy + backward + AdamW, train mode).
Run by the bench (needs torch, lgatr==2.0.0, safetensors); CI never runs it.
"""
import sys

import numpy as np
import torch
from lgatr.nets import LGATrSlim
from safetensors.torch import load_file

from serve import reply, serve


def read_tokens(raw, at, labels):
    jets, tokens, scalars = (int(x) for x in np.frombuffer(raw[at : at + 12], dtype="<u4"))
    at += 12
    out = []
    for shape in [(jets, tokens, 4), (jets, tokens, scalars), (jets, tokens)] + (
        [(jets,)] if labels else []
    ):
        n = int(np.prod(shape))
        out.append(np.frombuffer(raw[at : at + 4 * n], dtype="<f4").reshape(shape))
        at += 4 * n
    vectors = torch.from_numpy(out[0].copy()).unsqueeze(-2)
    scalars_t = torch.from_numpy(out[1].copy())
    mask = torch.from_numpy(out[2] > 0)[:, None, None, :]
    extra = [torch.from_numpy(out[3].astype(np.int64))] if labels else []
    return (vectors, scalars_t, mask, *extra), at


def main():
    weights, inputs, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = LGATrSlim(num_blocks=8, in_v_channels=1, out_v_channels=0, hidden_v_channels=32,
                    in_s_channels=8, out_s_channels=2, hidden_s_channels=128, num_heads=8,
                    mlp_ratio=2, attn_ratio=1)
    net.load_state_dict(load_file(weights), strict=True)
    raw = open(inputs, "rb").read()
    (v, s, mask, labels), at = read_tokens(raw, 0, True)
    (v1, s1, mask1), _ = read_tokens(raw, at, False)

    net.eval()
    with torch.no_grad():
        logits = net(v, s, attn_mask=mask)[1][:, 0]
    reply(dict(torch=torch.__version__, logits=logits.flatten().tolist()))

    def single():
        with torch.no_grad():
            net(v1, s1, attn_mask=mask1)

    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)

    def step():
        opt.zero_grad()
        out = net(v, s, attn_mask=mask)[1][:, 0]
        torch.nn.functional.cross_entropy(out, labels).backward()
        opt.step()

    serve(
        {
            "single": (net.eval, single),
            "train": (net.train, step),
            "warmup": (net.train, step),
        }
    )


if __name__ == "__main__":
    main()
