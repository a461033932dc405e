//! Quantisation-aware training and the integer engine: a quantised model trains, and the
//! engine reproduces every bit of the fake-quantised forward on all 5,000 bundled test
//! jets (PFN, EFN, PELICAN and the MLP on jet features), after training and from a
//! checkpoint.

mod common;

use common::{bundled, options, root};
use noether_data::JetFile;
use noether_train::{
    fixed_point_logits, load_inference_model, logits, train, RunData, TrainConfig,
};

/// 8-bit weights and results, 10-bit inputs and a 16-bit pooled sum.
const QUANT: &str = r#"
[quant]
input = "ap_fixed<10,4,AP_RND_CONV,AP_SAT>"
weight = "ap_fixed<8,2,AP_RND_CONV,AP_SAT>"
bias = "ap_fixed<8,3,AP_RND_CONV,AP_SAT>"
result = "ap_fixed<8,4,AP_RND_CONV,AP_SAT>"
pool = "ap_fixed<16,8,AP_RND_CONV,AP_SAT>"
[quant.layers."head"]
result = "ap_fixed<12,6,AP_RND_CONV,AP_SAT>"
"#;

fn config(model: &str, section: &str, epochs: usize) -> TrainConfig {
    config_quant(model, section, epochs, QUANT)
}

fn config_quant(model: &str, section: &str, epochs: usize, quant: &str) -> TrainConfig {
    bundled(&format!(
        r#"
model = "{model}"
{section}
[data]
train_jets = 1000
val_jets = 500
n_max = 30
batch_size = 64
[optim]
lr = 5e-3
[train]
epochs = {epochs}
seed = 3
bootstrap = 0
{quant}
"#
    ))
}

/// The best checkpoint of a run of `config` (in a directory removed afterwards), loaded
/// for inference, with its variables.
fn trained(config: &TrainConfig) -> (noether_train::Tagger, candle_nn::VarMap) {
    let dir = tempfile::tempdir().unwrap();
    let data = RunData::load(config).unwrap();
    train(config, &data, &options(dir.path())).unwrap().unwrap();
    let (model, varmap, _) = load_inference_model(&dir.path().join("best.safetensors")).unwrap();
    (model, varmap)
}

fn test_jets() -> noether_data::JetSet {
    JetFile::open(root().join("data/test.h5"))
        .unwrap()
        .read_all()
        .unwrap()
        .0
}

/// Every logit of the engine equals the float forward's, bit for bit, and the
/// quantisation is active (the logits are multiples of the head's lsb, and differ from
/// those of the same weights in floating point).
fn assert_engine_exact(model: &noether_train::Tagger, config: &TrainConfig) {
    let jets = test_jets();
    let float = logits(model, &jets, config.data.n_max, 1000)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let engine = fixed_point_logits(model, &jets, config.data.n_max).unwrap();
    assert_eq!(engine.len(), 5000);
    let mut distinct = std::collections::BTreeSet::new();
    for (b, (f, e)) in float.iter().zip(&engine).enumerate() {
        let (fb, eb): (Vec<u32>, Vec<u32>) = (
            f.iter().map(|x| x.to_bits()).collect(),
            e.iter().map(|x| x.to_bits()).collect(),
        );
        assert_eq!(fb, eb, "jet {b}: forward {f:?}, engine {e:?}");
        for x in f {
            assert_eq!(
                (x * 64.0).fract(),
                0.0,
                "jet {b}: {x} is not a multiple of 2^-6"
            );
            distinct.insert(x.to_bits());
        }
    }
    assert!(
        distinct.len() > 50,
        "only {} distinct logits",
        distinct.len()
    );
}

#[test]
fn quantised_deep_sets_pelican_and_mlp_match_the_integer_engine_bit_for_bit() {
    for (model, section) in [
        ("pfn", "[pfn]\nphi_sizes = [16, 16]\nf_sizes = [16]"),
        ("efn", "[efn]\nphi_sizes = [16, 16]\nf_sizes = [16]"),
        ("mlp", "[mlp]\nsizes = [16, 16]"),
        (
            "pelican",
            "[pelican]\nn_embed = 3\nn_msg = 5\nn_hidden = 5\nn_layers = 2\nn_readout = 5\n\
             dropout = 0.0\nn_avg = 32.0",
        ),
    ] {
        let config = config(model, section, 2);
        let (quantised, varmap) = trained(&config);
        assert_engine_exact(&quantised, &config);
        // The same weights in floating point give other logits.
        let float_config = TrainConfig {
            quant: None,
            ..config.clone()
        };
        let float = noether_train::inference_model(&float_config, &varmap).unwrap();
        let jets = test_jets();
        let a = logits(&quantised, &jets, 30, 1000)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        let b = logits(&float, &jets, 30, 1000)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert_ne!(a, b, "{model}: quantisation changed nothing");
    }
}

/// L-GATr-slim's token stage: norms, gates and softmax through lookup tables.
#[test]
fn a_quantised_lgatr_slim_matches_the_integer_engine_bit_for_bit() {
    // The head is `linear_out`; block 0's softmax sum gets room for 34 tokens (block 1's
    // keeps the default table input and saturates at 16).
    let quant = QUANT.replace("\"head\"", "\"linear_out\"")
        + "[quant.layers.\"blocks.0.attention.softmax\"]\naccum = \"ap_ufixed<10,6,AP_RND_CONV,AP_SAT>\"\n";
    let config = config_quant(
        "lgatr_slim",
        "[lgatr_slim]\nhidden_v_channels = 2\nhidden_s_channels = 8\nnum_blocks = 2\n\
         num_heads = 2\nunits = 100.0",
        2,
        &quant,
    );
    let (quantised, varmap) = trained(&config);
    assert_engine_exact(&quantised, &config);
    // The fixed-point form holds every parameter of the float model (gains included),
    // and no bias the float model does not have.
    let float: usize = varmap.all_vars().iter().map(|v| v.elem_count()).sum();
    assert_eq!(quantised.quant_graph().unwrap().parameters(), float);
}

#[test]
fn a_quantised_pfn_trains_and_its_checkpoint_runs_bit_exactly_in_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    let config = config("pfn", "[pfn]\nphi_sizes = [16, 16]\nf_sizes = [16]", 6);
    let data = RunData::load(&config).unwrap();
    let summary = train(&config, &data, &options(dir.path()))
        .unwrap()
        .unwrap();
    assert!(
        summary.auc > 0.85,
        "a quantised PFN on 1,000 jets reached AUC {}",
        summary.auc
    );
    let (model, _, loaded) = load_inference_model(&dir.path().join("best.safetensors")).unwrap();
    assert_eq!(loaded.quant, config.quant);
    assert_engine_exact(&model, &loaded);
}
