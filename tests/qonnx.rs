//! The time-limited regime from the command line: QONNX export checked against the
//! `qonnx` package's executor (fixtures by `tests/fixtures/make_qonnx_fixtures.py`: PFN,
//! EFN, MLP, PELICAN and L-GATr-slim checkpoints trained with `[quant]`, their exports and
//! qonnx's logits on 300 seeded inputs, saturating ones included, and for PFN, EFN and PELICAN
//! also the first 300 bundled test jets; PELICAN's export takes the embedded products,
//! which the script computes with numpy from the products the engine is fed),
//! `eval --fixed-point`, `latency`, and the errors of models and types QONNX cannot
//! express.

mod common;

use std::path::{Path, PathBuf};

use common::{noether, root, s};
use noether::quant::Engine;
use noether::train::load_inference_model;

/// qonnx's inputs and logits for one model.
struct QonnxRun {
    features: Vec<f32>,
    mask: Vec<f32>,
    logits: Vec<f32>,
}

impl QonnxRun {
    fn load(path: &Path) -> Self {
        let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let floats = |key: &str| -> Vec<f32> {
            doc[key]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect()
        };
        Self {
            features: floats("features"),
            mask: floats("mask"),
            logits: floats("logits"),
        }
    }
}

fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures/qonnx").join(name)
}

#[test]
fn exports_equal_the_fixtures_and_the_engine_gives_qonnx_logits_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    for model in ["pfn", "efn", "mlp", "pelican", "lgatr_slim"] {
        let ckpt = fixture(&format!("{model}.safetensors"));
        let out = dir.path().join(format!("{model}.onnx"));
        let (ok, text) = noether(&[
            "export",
            "--format",
            "qonnx",
            "--checkpoint",
            s(&ckpt),
            "--out",
            s(&out),
        ]);
        assert!(ok, "{text}");
        assert!(text.contains("Quant nodes"), "{text}");
        assert_eq!(
            std::fs::read(&out).unwrap(),
            std::fs::read(fixture(&format!("{model}.onnx"))).unwrap(),
            "{model}: the export changed; rerun tests/fixtures/make_qonnx_fixtures.py"
        );
        let run = QonnxRun::load(&fixture(&format!("{model}.json")));
        let (tagger, _, _) = load_inference_model(&ckpt).unwrap();
        let mut engine = Engine::new(&tagger.quant_graph().unwrap()).unwrap();
        let jets = run.logits.len() / 2;
        let per_jet = run.features.len() / jets;
        let nodes = run.mask.len() / jets;
        let mut distinct = std::collections::BTreeSet::new();
        for b in 0..jets {
            let mask = &run.mask[b * nodes..(b + 1) * nodes];
            let logits = engine
                .run(&run.features[b * per_jet..(b + 1) * per_jet], mask)
                .unwrap();
            let want = &run.logits[2 * b..2 * b + 2];
            let got: Vec<f32> = logits.iter().map(|&l| l as f32).collect();
            // Equal values are equal raw integers (qonnx may write -0.0 for 0).
            assert_eq!(got, want, "{model} jet {b}: engine {got:?}, qonnx {want:?}");
            distinct.extend(got.iter().map(|x| x.to_bits()));
        }
        assert_eq!(
            jets,
            if matches!(model, "mlp" | "lgatr_slim") {
                300
            } else {
                600
            }
        );
        // PELICAN's 3-epoch fixture model spans logits about 1 wide on the head's 1/64
        // grid: ~50 distinct values, against hundreds for the others.
        let floor = if model == "pelican" { 40 } else { 100 };
        assert!(
            distinct.len() > floor,
            "{model}: {} distinct logits",
            distinct.len()
        );
    }
}

/// The per-particle layout (the form hls4ml converts: `benches/compare/hls4ml_csim.py`
/// finds its C simulation equal to the engine on every fixture jet) is byte-identical
/// to the fixtures, whose logits under qonnx's executor the fixture script checked to
/// be the stacked export's; for PELICAN (`pelican2`, a PELICAN-nano trained on 2
/// constituents: one input per pair of its 4 nodes) the engine also gives qonnx's logits
/// on the bundled jets cut to 2 constituents.
#[test]
fn per_particle_exports_equal_the_fixtures() {
    let dir = tempfile::tempdir().unwrap();
    for (model, constituents) in [("pfn", "16"), ("efn", "16"), ("pelican2", "2")] {
        let out = dir.path().join(format!("{model}_per_particle.onnx"));
        let ckpt = fixture(&format!("{model}.safetensors"));
        let (ok, text) = noether(&[
            "export",
            "--format",
            "qonnx",
            "--layout",
            "per-particle",
            "--constituents",
            constituents,
            "--checkpoint",
            s(&ckpt),
            "--out",
            s(&out),
        ]);
        assert!(ok, "{text}");
        assert!(
            text.contains(&format!("{constituents} constituents")),
            "{text}"
        );
        assert_eq!(
            std::fs::read(&out).unwrap(),
            std::fs::read(fixture(&format!("{model}_per_particle.onnx"))).unwrap(),
            "{model}: the per-particle export changed; rerun \
             tests/fixtures/make_qonnx_fixtures.py --per-particle"
        );
    }
    let run = QonnxRun::load(&fixture("pelican2_per_particle.json"));
    let (tagger, _, _) = load_inference_model(&fixture("pelican2.safetensors")).unwrap();
    let graph = tagger.quant_graph().unwrap();
    // hls4ml folds a constant into its first reader and loses it for the others.
    let (model, _) =
        noether::quant::qonnx_model(&graph, 4, noether::quant::ParticleLayout::PerParticle)
            .unwrap();
    let onnx = model.graph.unwrap();
    let mut readers = std::collections::HashMap::<&str, usize>::new();
    for input in onnx.node.iter().flat_map(|n| &n.input) {
        *readers.entry(input.as_str()).or_default() += 1;
    }
    for constant in &onnx.initializer {
        assert_eq!(
            readers.get(constant.name.as_str()),
            Some(&1),
            "{}",
            constant.name
        );
    }
    let mut engine = Engine::new(&graph).unwrap();
    let jets = run.logits.len() / 2;
    let nodes = run.mask.len() / jets;
    assert_eq!((jets, nodes), (300, 4));
    let per_jet = run.features.len() / jets;
    for b in 0..jets {
        let mask = &run.mask[b * nodes..(b + 1) * nodes];
        let logits = engine
            .run(&run.features[b * per_jet..(b + 1) * per_jet], mask)
            .unwrap();
        let got: Vec<f32> = logits.iter().map(|&l| l as f32).collect();
        assert_eq!(got, run.logits[2 * b..2 * b + 2], "pelican cut jet {b}");
    }
}

#[test]
fn the_fixture_jet_features_are_noethers() {
    // numpy's (z, y - y_J, phi - phi_J) of the first 300 bundled test jets, as the fixture
    // script computes them independently, against noether's input of the same jets.
    let run = QonnxRun::load(&fixture("pfn.json"));
    let (tagger, _, config) = load_inference_model(&fixture("pfn.safetensors")).unwrap();
    let jets = noether::data::JetFile::open(root().join("data/test.h5"))
        .unwrap()
        .read(0, 300)
        .unwrap()
        .0;
    let input = noether::train::jet_inputs(&tagger, &jets, config.data.n_max).unwrap();
    let ours = noether::equivariant::FixedPointInput::new(&input).unwrap();
    let per_jet = run.features.len() / 600;
    let mut worst = 0f32;
    for b in 0..300 {
        let theirs = &run.features[(300 + b) * per_jet..(301 + b) * per_jet];
        let (x, mask) = ours.jet(b);
        assert_eq!(
            mask,
            &run.mask[(300 + b) * 16..(301 + b) * 16],
            "jet {b} mask"
        );
        for (a, c) in x.iter().zip(theirs) {
            worst = worst.max((a - c).abs());
        }
    }
    assert!(worst < 1e-6, "features differ by {worst}");
}

fn pfn_config(dir: &Path, quant: &str) -> PathBuf {
    let path = dir.join("pfn.toml");
    let data = root().join("data");
    std::fs::write(
        &path,
        format!(
            "model = \"pfn\"\n[pfn]\nphi_sizes = [8]\nf_sizes = [8]\n\
             [data]\ntrain = \"{}\"\nval = \"{}\"\ntest = \"{}\"\ntrain_jets = 200\n\
             val_jets = 100\nn_max = 16\nbatch_size = 50\n[train]\nepochs = 1\n{quant}",
            data.join("train.h5").display(),
            data.join("val.h5").display(),
            data.join("val.h5").display(),
        ),
    )
    .unwrap();
    path
}

#[test]
fn fixed_point_eval_equals_the_float_eval_and_latency_prints_its_lines() {
    let dir = tempfile::tempdir().unwrap();
    let config = pfn_config(
        dir.path(),
        "[quant]\nweight = \"ap_fixed<8,2,AP_RND_CONV,AP_SAT>\"\n",
    );
    let run = dir.path().join("run");
    let (ok, text) = noether(&["train", "--config", s(&config), "--out", s(&run)]);
    assert!(ok, "{text}");
    let ckpt = run.join("best.safetensors");
    let test = root().join("data/test.h5");
    let eval = |extra: &[&str]| {
        let mut args = vec!["eval", "--checkpoint", s(&ckpt), "--data", s(&test)];
        args.extend_from_slice(extra);
        let (ok, text) = noether(&args);
        assert!(ok, "{text}");
        text
    };
    let float = eval(&[]);
    assert!(float.starts_with("jets=5000 acc="), "{float}");
    assert_eq!(eval(&["--fixed-point"]), float);
    let (ok, text) = noether(&[
        "latency",
        "--checkpoint",
        s(&ckpt),
        "--fixed-point",
        "--constituents",
        "32",
        "--calls",
        "2000",
        "--data",
        s(&test),
    ]);
    assert!(ok, "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("model=pfn constituents=32 mode=fixed-point"),
        "{text}"
    );
    let ns: f64 = lines[1]
        .strip_prefix("latency_ns_per_jet=")
        .unwrap()
        .parse()
        .unwrap();
    let rate: f64 = lines[2]
        .strip_prefix("throughput_jets_per_s=")
        .unwrap()
        .parse()
        .unwrap();
    assert!(ns > 0.0 && rate > 0.0, "{text}");
    // One chosen jet; a row past the file is refused naming the file and the row.
    let one_jet = |row: &str| {
        noether(&[
            "latency",
            "--checkpoint",
            s(&ckpt),
            "--calls",
            "50",
            "--data",
            s(&test),
            "--jet",
            row,
        ])
    };
    let (ok, text) = one_jet("4999");
    assert!(ok && text.contains("latency_ns_per_jet="), "{text}");
    let (ok, text) = one_jet("5000");
    assert!(
        !ok && text.contains("test.h5")
            && text.contains("--jet 5000 is past its last row (5000 jets)"),
        "{text}"
    );
}

#[test]
fn token_model_exports_are_stacked_and_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("model.onnx");
    // A token model attends over all tokens: no per-particle layout, and no more tokens
    // than its sums are checked for.
    for (args, why) in [
        (
            &["--layout", "per-particle"][..],
            "exports only the stacked layout",
        ),
        (
            &["--constituents", "300"][..],
            "304 tokens, more than the 256",
        ),
    ] {
        let mut command = vec!["export", "--format", "qonnx", "--out", s(&out)];
        command.extend(args);
        let ckpt = fixture("lgatr_slim.safetensors");
        command.extend(["--checkpoint", s(&ckpt)]);
        let (ok, text) = noether(&command);
        assert!(
            !ok && text.contains("lgatr_slim: ") && text.contains(why),
            "{text}"
        );
        assert!(!out.exists());
    }
}

#[test]
fn models_and_types_qonnx_cannot_express_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("model.onnx");
    let export = |ckpt: &Path| {
        noether(&[
            "export",
            "--format",
            "qonnx",
            "--checkpoint",
            s(ckpt),
            "--out",
            s(&out),
        ])
    };
    // Trained without [quant].
    let plain = pfn_config(dir.path(), "");
    let run = dir.path().join("plain");
    assert!(noether(&["train", "--config", s(&plain), "--out", s(&run)]).0);
    let (ok, text) = export(&run.join("best.safetensors"));
    assert!(
        !ok && text.contains("was not trained with quantisation"),
        "{text}"
    );
    let (ok, text) = noether(&[
        "eval",
        "--checkpoint",
        s(&run.join("best.safetensors")),
        "--data",
        s(&root().join("data/val.h5")),
        "--fixed-point",
    ]);
    assert!(
        !ok && text.contains("was not trained with quantisation"),
        "{text}"
    );
    // Rounding of halves upwards and wrap-around have no QONNX form.
    for (quant, tensor, why) in [
        (
            "result = \"ap_fixed<8,4,AP_RND,AP_SAT>\"",
            "phi_0_result",
            "AP_RND_CONV",
        ),
        (
            "bias = \"ap_fixed<8,3,AP_TRN,AP_WRAP>\"",
            "phi_0_bias",
            "only AP_SAT types export",
        ),
    ] {
        let config = pfn_config(dir.path(), &format!("[quant]\n{quant}\n"));
        let run = dir.path().join("odd");
        let _ = std::fs::remove_dir_all(&run);
        assert!(noether(&["train", "--config", s(&config), "--out", s(&run)]).0);
        let (ok, text) = export(&run.join("best.safetensors"));
        assert!(!ok && text.contains(tensor) && text.contains(why), "{text}");
        assert!(!out.exists());
    }
    // A pair model for more nodes than its sums are checked for, in either layout.
    for layout in ["stacked", "per-particle"] {
        let (ok, text) = noether(&[
            "export",
            "--format",
            "qonnx",
            "--layout",
            layout,
            "--constituents",
            "300",
            "--checkpoint",
            s(&fixture("pelican2.safetensors")),
            "--out",
            s(&out),
        ]);
        assert!(
            !ok && text.contains("302 nodes") && text.contains("256"),
            "{layout}: {text}"
        );
        assert!(!out.exists());
    }
    // A model without a fixed-point form, and a layer the model does not have.
    for (model, quant, why) in [
        ("lorentznet", "[quant]\n", "has no fixed-point form"),
        (
            "pfn",
            "[quant.layers.\"phi.5\"]\nweight = \"ap_fixed<4,1>\"\n",
            "no layer phi.5",
        ),
        (
            "pfn",
            "[quant]\nweight = \"ap_fixed<40,4>\"\n",
            "[quant] weight: fixed-point type ap_fixed<40,4>: W = 40 > 32",
        ),
    ] {
        let config = dir.path().join("bad.toml");
        std::fs::write(&config, format!("model = \"{model}\"\n{quant}")).unwrap();
        let (ok, text) = noether(&[
            "train",
            "--config",
            s(&config),
            "--out",
            s(&dir.path().join("bad")),
        ]);
        assert!(!ok && text.contains(why), "{model} {quant}: {text}");
    }
}
