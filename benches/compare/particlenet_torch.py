"""weaver-core's ParticleNet on PyTorch (`weaver.nn.model.ParticleNet`, PyPI weaver-core),
the speed reference for `cargo bench --bench particlenet_compare`.

Usage: particlenet_torch.py CHECKPOINT INPUTS_BIN THREADS
  - builds the JetClass ParticleNet (the architecture of ParticleNet_kin.pt) and loads
    the checkpoint (`mod.` prefix stripped);
  - reads the batch written by the Rust bench (INPUTS_BIN: little-endian header of
    3 u32 (batch, length, features), then f32 points [batch, length, 2], features
    [batch, length, features], mask [batch, length], labels [batch]: channels last, as
    noether holds them; transposed here to weaver's channels first);
  - prints one JSON line: the eval logits of the batch (for the cross-check) and the
    torch version; then serves the bench's paired rounds (`serve.py`): `single` (a
    single-jet inference, eval mode, no_grad, the first jet of the batch), `train` and
    `warmup` (a training step: forward + backward + AdamW, train mode).
Run by the bench (needs torch and weaver-core); CI never runs it.
"""
import sys

import numpy as np
import torch
from weaver.nn.model.ParticleNet import ParticleNet

from serve import reply, serve


def read_inputs(path):
    raw = open(path, "rb").read()
    batch, length, features = np.frombuffer(raw[:12], dtype="<u4")
    values = np.frombuffer(raw[12:], dtype="<f4")
    at = 0

    def take(*shape):
        nonlocal at
        n = int(np.prod(shape))
        out = values[at : at + n].reshape(shape)
        at += n
        return out

    points = take(batch, length, 2)
    feats = take(batch, length, features)
    mask = take(batch, length)
    labels = take(batch)
    to_torch = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(0, 2, 1)))
    return (
        to_torch(points),
        to_torch(feats),
        torch.from_numpy(np.ascontiguousarray(mask[:, None, :])),
        torch.from_numpy(labels.astype(np.int64)),
    )


def main():
    checkpoint, inputs, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = ParticleNet(
        input_dims=7,
        num_classes=10,
        conv_params=[(16, (64, 64, 64)), (16, (128, 128, 128)), (16, (256, 256, 256))],
        fc_params=[(256, 0.1)],
        use_fusion=False,
        use_fts_bn=True,
        use_counts=True,
        for_inference=False,
    )
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    model.load_state_dict({k.removeprefix("mod."): v for k, v in state.items()})
    points, features, mask, labels = read_inputs(inputs)
    one = (points[:1], features[:1], mask[:1])

    model.eval()
    with torch.no_grad():
        logits = model(points, features, mask)
    reply({"logits": logits.flatten().tolist(), "torch": torch.__version__})

    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        opt.zero_grad()
        loss = loss_fn(model(points, features, mask), labels)
        loss.backward()
        opt.step()

    def single():
        with torch.no_grad():
            model(*one)

    serve(
        {
            "single": (model.eval, single),
            "train": (model.train, step),
            "warmup": (model.train, step),
        }
    )


if __name__ == "__main__":
    main()
