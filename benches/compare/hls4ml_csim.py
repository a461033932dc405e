"""noether's fixed-point models through hls4ml: converts each QONNX export with
`hls4ml.converters.convert_from_onnx_model` (Vitis backend), builds its C simulation
(g++ only, no Vivado/Vitis) and compares its predictions with noether's integer engine
on the same inputs, reporting mismatches by layer (hls4ml's trace).

    cargo build --release
    pip install hls4ml==1.3.0 qonnx==1.0.0 onnxruntime
    python3 tests/fixtures/make_qonnx_fixtures.py   # or use the committed fixtures
    python3 benches/compare/hls4ml_csim.py [MODEL ...] [--pelican-constituents K]
                                           # default: mlp pfn efn pelican lgatr_slim, K = 2

The Deep Sets (PFN, EFN) are exported again from the fixture checkpoints with
`noether export --layout per-particle` (one input per particle, the per-particle layers
repeated), the form hls4ml's ONNX frontend converts; the fixture's stacked export it
does not (`ReduceSum`, `Gather`). PELICAN is `pelican2` (a PELICAN-nano fixture trained
on 2 constituents) exported per pair (`--layout per-particle --constituents K`: one input per
pair of nodes and per node), on the fixture's bundled test jets cut to K constituents,
against qonnx's logits of noether's stacked export of the same jets (which equal the
engine's). hls4ml's conversion time grows about with the cube of the node count, which
is why the fixture has 2 constituents. L-GATr-slim's stacked export (its tables are
`Gather`s, its attention rank-6 `Transpose`s and `MatMul`s between activations) is tried
as it is: hls4ml 1.3 reports the first operation it cannot read.

Inputs come from tests/fixtures/qonnx/MODEL.json (noether's engine logits there equal
qonnx's, checked by tests/qonnx.rs). They are fed to hls4ml already in the export's
input type, as a trigger's inputs arrive: hls4ml would otherwise truncate them to its
default input precision first and round twice. Prints one line per model:
`hls4ml_csim model=M jets=N mismatched_jets=K` (or `unsupported=OP`), the layer trace
of the first mismatched jet if any, and the time taken. HLS4ML_CSIM_TRACEBACK=1 raises
the converter's errors instead of summarising them.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "qonnx")
NOETHER = os.path.join(ROOT, "target", "release", "noether")


def per_particle_export(model_name, nodes, workdir):
    """The fixture checkpoint exported with one input per particle."""
    out = os.path.join(workdir, f"{model_name}_per_particle.onnx")
    subprocess.run(
        [NOETHER, "export", "--format", "qonnx", "--layout", "per-particle", "--constituents", str(nodes),
         "--checkpoint", os.path.join(FIXTURES, f"{model_name}.safetensors"), "--out", out],
        check=True, capture_output=True,
    )
    return out


def weight_feature(stacked):
    """The feature index of the EFN's pooling weight in the stacked export (None: PFN)."""
    from onnx import numpy_helper

    for t in stacked.graph.initializer:
        if t.name == "weight_feature":
            return int(numpy_helper.to_array(t)[0])
    return None


def per_particle_inputs(onnx_model, x, mask, weight_k):
    """The arrays of the per-particle export's inputs, in its input order."""
    keep = [f for f in range(x.shape[2]) if f != weight_k]
    arrays = []
    for value in onnx_model.graph.input:
        kind, k = value.name.rsplit("_", 1)
        k = int(k)
        if kind == "features":
            arrays.append(x[:, k, keep])
        elif kind == "weight":
            arrays.append(x[:, k, [weight_k]])
        else:
            arrays.append(mask[:, k, :])
    return [np.ascontiguousarray(a) for a in arrays]


def input_type(onnx_model, name):
    """The ap_fixed of the Quant node on input `name`: (width, integer, signed, rounding)."""
    from onnx import numpy_helper

    inits = {t.name: numpy_helper.to_array(t) for t in onnx_model.graph.initializer}
    node = next(n for n in onnx_model.graph.node if n.op_type == "Quant" and n.input[0] == name)
    attrs = {a.name: a for a in node.attribute}
    scale = float(inits[node.input[1]])
    width = int(inits[node.input[3]])
    fraction = int(round(-np.log2(scale)))
    signed = attrs["signed"].i == 1
    rounding = attrs["rounding_mode"].s.decode()
    return width, width - fraction, signed, rounding


def quantize(x, width, integer, signed, rounding):
    """x rounded to ap_(u)fixed<width, integer> the way the export's Quant does."""
    f = width - integer
    scaled = x * 2.0**f
    scaled = np.round(scaled) if rounding == "ROUND" else np.floor(scaled)
    lo, hi = (-(2 ** (width - 1)), 2 ** (width - 1) - 1) if signed else (0, 2**width - 1)
    return np.clip(scaled, lo, hi) / 2.0**f


def pelican_case(constituents, workdir):
    """PELICAN's per-pair export of `pelican2` (trained on 2 constituents) for
    `constituents` and its inputs: the fixture's bundled test jets
    (tests/fixtures/qonnx/pelican2_per_particle.json) cut to that many constituents, their
    products embedded as the fixture script does. The logits to match are qonnx's on
    noether's stacked export of the same jets (equal to the engine's: tests/qonnx.rs)."""
    import onnx

    sys.path.insert(0, os.path.join(ROOT, "tests", "fixtures"))
    from make_qonnx_fixtures import checkpoint_tensor, pelican_embedded, run_qonnx

    ckpt = os.path.join(FIXTURES, "pelican2.safetensors")
    doc = json.load(open(os.path.join(FIXTURES, "pelican2_per_particle.json")))
    jets = len(doc["logits"]) // 2
    mask = np.array(doc["mask"], dtype=np.float32).reshape(jets, -1)
    nodes = mask.shape[1]
    rows = np.array(doc["features"], dtype=np.float32).reshape(jets, nodes, nodes + 2)
    kept = constituents + 2
    mask = mask[:, :kept]
    rows = np.concatenate([rows[:, :kept, :kept], rows[:, :kept, nodes:]], axis=-1)
    paths = {}
    for layout in ("stacked", "per-particle"):
        paths[layout] = os.path.join(workdir, f"pelican2_{layout}.onnx")
        subprocess.run(
            [NOETHER, "export", "--format", "qonnx", "--layout", layout, "--constituents",
             str(constituents), "--checkpoint", ckpt, "--out", paths[layout]],
            check=True, capture_output=True,
        )
    exported = onnx.load(paths["per-particle"])
    width, integer, signed, rounding = input_type(exported, "embedded_0_0")
    embedded = pelican_embedded(rows, checkpoint_tensor(ckpt, "embed.alphas"), width, integer)
    labels = rows[:, :, kept:]
    feed = {"embedded": embedded, "labels": labels, "mask": mask[..., None]}
    want = run_qonnx(paths["stacked"], feed, jets).astype(np.float64)
    if constituents == 2:
        assert (want.reshape(-1) == np.array(doc["logits"])).all()
    arrays, kinds = [], []
    for value in exported.graph.input:
        kind, *index = value.name.split("_")
        index = [int(k) for k in index]
        if kind == "embedded":
            arrays.append(embedded[:, index[0], index[1], :])
        elif kind == "labels":
            arrays.append(labels[:, index[0], :])
        else:
            arrays.append(mask[:, index[0] : index[0] + 1])
        kinds.append(kind)
    arrays = [np.ascontiguousarray(a, dtype=np.float64) for a in arrays]
    return paths["per-particle"], arrays, kinds, want, (width, integer, signed, rounding)


def deep_sets_case(model_name, workdir):
    """A Deep Sets or MLP fixture: the export hls4ml converts and its inputs."""
    import onnx

    path = os.path.join(FIXTURES, f"{model_name}.onnx")
    doc = json.load(open(os.path.join(FIXTURES, f"{model_name}.json")))
    raw = onnx.load(path)
    jets = len(doc["logits"]) // 2
    width, integer, signed, rounding = input_type(raw, "features")
    x = np.array(doc["features"], dtype=np.float64).reshape(jets, -1)
    if doc["mask"]:
        x = x.reshape(jets, len(doc["mask"]) // jets, -1)
    x = quantize(x, width, integer, signed, rounding)
    want = np.array(doc["logits"]).reshape(jets, 2)
    if doc["mask"]:
        mask = np.array(doc["mask"], dtype=np.float64).reshape(jets, -1, 1)
        path = per_particle_export(model_name, x.shape[1], workdir)
        exported = onnx.load(path)
        inputs = per_particle_inputs(exported, x, mask, weight_feature(raw))
        kinds = [v.name.rsplit("_", 1)[0] for v in exported.graph.input]
    else:
        inputs, kinds = [np.ascontiguousarray(x)], ["features"]
    return path, inputs, kinds, want, (width, integer, signed, rounding)


def token_case(model_name):
    """L-GATr-slim: the fixture's stacked export (`tokens`, `mask`; the only layout a
    token model exports) and its inputs."""
    import onnx

    path = os.path.join(FIXTURES, f"{model_name}.onnx")
    doc = json.load(open(os.path.join(FIXTURES, f"{model_name}.json")))
    jets = len(doc["logits"]) // 2
    width, integer, signed, rounding = input_type(onnx.load(path), "tokens")
    mask = np.array(doc["mask"], dtype=np.float64).reshape(jets, -1, 1)
    x = np.array(doc["features"], dtype=np.float64).reshape(jets, mask.shape[1], -1)
    x = quantize(x, width, integer, signed, rounding)
    want = np.array(doc["logits"]).reshape(jets, 2)
    return path, [x, mask], ["tokens", "mask"], want, (width, integer, signed, rounding)


def compare(model_name, workdir, pelican_constituents):
    import hls4ml
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.channels_last import ConvertToChannelsLastAndClean
    from qonnx.transformation.gemm_to_matmul import GemmToMatMul
    from qonnx.transformation.infer_datatypes import InferDataTypes
    from qonnx.transformation.infer_shapes import InferShapes
    from qonnx.util.cleanup import cleanup_model

    if model_name == "pelican":
        path, inputs, kinds, want, input_spec = pelican_case(pelican_constituents, workdir)
    elif model_name == "lgatr_slim":
        path, inputs, kinds, want, input_spec = token_case(model_name)
    else:
        path, inputs, kinds, want, input_spec = deep_sets_case(model_name, workdir)
    width, integer, signed, rounding = input_spec
    jets = len(want)
    if model_name in ("pelican", "lgatr_slim"):
        # qonnx's cleanup sorts the graph after every rename (cubic in the node count);
        # the per-pair export is already sorted, uniquely named, channels-last and has
        # no constant read by two nodes (what the cleanup would give hls4ml). The token
        # model is channels-last already (qonnx's conversion wants every shape inferred,
        # which its symbolic batch through `Reshape` does not give).
        model = ModelWrapper(path).transform(InferShapes(), cleanup=False)
        model = model.transform(InferDataTypes(), cleanup=False)
    else:
        model = cleanup_model(ModelWrapper(path))
        model = model.transform(ConvertToChannelsLastAndClean()).transform(GemmToMatMul())
        model = cleanup_model(model)
    try:
        config = hls4ml.utils.config.config_from_onnx_model(
            model, granularity="name", backend="Vitis", default_precision="fixed<16,6>"
        )
    except Exception as e:  # hls4ml's ONNX frontend names the op it cannot read
        print(f"hls4ml_csim model={model_name} jets={jets} unsupported={str(e).split(':')[-1].strip()}")
        return
    spec = f"{'fixed' if signed else 'ufixed'}<{width},{integer},{'RND_CONV' if rounding == 'ROUND' else 'TRN'},SAT>"
    for layer in config["LayerName"].values():
        layer["Trace"] = True
    # hls4ml names the inputs global_in, global_in_1, ... in the graph's input order after
    # qonnx's cleanup, by their tensor names without it.
    input_names = [v.name for v in model.graph.input]
    for i, kind in enumerate(kinds):
        name = "global_in" if i == 0 else f"global_in_{i}"
        name = input_names[i] if input_names[i] in config["LayerName"] else name
        config["LayerName"][name]["Precision"] = "ufixed<1,1>" if kind in ("mask", "labels") else spec
    try:
        hls_model = hls4ml.converters.convert_from_onnx_model(
            model, output_dir=os.path.join(workdir, model_name), backend="Vitis", hls_config=config
        )
    except Exception as e:  # hls4ml's ONNX frontend names the op it cannot read
        if os.environ.get("HLS4ML_CSIM_TRACEBACK"):
            raise
        op = str(e).split(":")[-1].strip()
        print(f"hls4ml_csim model={model_name} jets={jets} unsupported={op}")
        return
    hls_model.compile()
    got = np.asarray(hls_model.predict(inputs if len(inputs) > 1 else inputs[0])).reshape(jets, 2)
    bad = np.where(np.any(got != want, axis=1))[0]
    print(f"hls4ml_csim model={model_name} jets={jets} mismatched_jets={len(bad)}")
    print(f"  ({len({tuple(row) for row in want.tolist()})} distinct logit pairs)")
    if len(bad):
        _, trace = hls_model.trace([a[bad] for a in inputs] if len(inputs) > 1 else inputs[0][bad])
        for name, values in trace.items():
            print(f"  layer {name}: hls4ml {np.asarray(values)[0].reshape(-1)[:6]}")
        print(f"  first mismatched jet {bad[0]}: hls4ml {got[bad[0]]}, noether {want[bad[0]]}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "models", nargs="*", default=["mlp", "pfn", "efn", "pelican", "lgatr_slim"]
    )
    parser.add_argument(
        "--pelican-constituents", type=int, default=2,
        help="constituents of PELICAN's per-pair export (hls4ml's conversion time grows "
        "about with the cube of its layer count)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        for name in args.models:
            start = time.time()
            compare(name, workdir, args.pelican_constituents)
            print(f"  ({name}: {time.time() - start:.0f} s)")


if __name__ == "__main__":
    main()
