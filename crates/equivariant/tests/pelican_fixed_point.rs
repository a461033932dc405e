//! PELICAN's quantisation-aware forward: its sums are exact, so permuting the
//! constituents or padding the jet changes no bit of the logits; the straight-through
//! gradients reach every quantised layer and nothing that the fixed-point form does not
//! use (embedding exponents, aggregation exponents, BatchNorm).

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use noether_equivariant::{
    seeded_varbuilder, Mode, ModelConfig, PelicanConfig, PelicanInput, Tagger, TaggerInput,
};
use noether_kinematics::FourMomentum;
use noether_testkit::SymmetryKit;

fn quantised(varmap: &VarMap) -> Tagger {
    let vb = seeded_varbuilder(varmap, 5, DType::F32, &Device::Cpu);
    let config = PelicanConfig {
        n_avg: 32.0,
        ..PelicanConfig::tiny()
    };
    let mut model = Tagger::new(&ModelConfig::Pelican(config), &vb).unwrap();
    let quant: noether_quant::QuantConfig = noether_quant::QuantConfig {
        input: "ap_fixed<12,6,AP_RND_CONV,AP_SAT>".parse().unwrap(),
        weight: "ap_fixed<8,2,AP_RND_CONV,AP_SAT>".parse().unwrap(),
        bias: "ap_fixed<8,3,AP_RND_CONV,AP_SAT>".parse().unwrap(),
        result: "ap_ufixed<10,4,AP_RND_CONV,AP_SAT>".parse().unwrap(),
        pool: Some("ap_fixed<14,9,AP_RND_CONV,AP_SAT>".parse().unwrap()),
        ..noether_quant::QuantConfig::default()
    };
    model.quantize(&quant).unwrap();
    model
}

/// Beams then the constituents (in GeV), `pad` masked nodes appended.
fn input(jet: &[FourMomentum], pad: usize) -> TaggerInput {
    let beams = [[1.0, 0.0, 0.0, 1.0], [1.0, 0.0, 0.0, -1.0]];
    let mut momenta: Vec<f64> = beams.iter().flatten().copied().collect();
    momenta.extend(jet.iter().flat_map(|p| p.to_array().map(|x| x * 100.0)));
    let n = jet.len() + 2 + pad;
    momenta.resize(4 * n, 0.0);
    let mut mask = vec![1.0; jet.len() + 2];
    mask.resize(n, 0.0);
    TaggerInput::Pelican(PelicanInput::from_flat_f64(&momenta, &mask, 1, n, 2).unwrap())
}

fn logits(model: &Tagger, input: &TaggerInput) -> Vec<u32> {
    model
        .forward_t(input, &mut Mode::Eval)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .map(|x| x.to_bits())
        .collect()
}

#[test]
fn quantised_logits_ignore_constituent_order_and_padding_bit_for_bit() {
    let varmap = VarMap::new();
    let model = quantised(&varmap);
    let kit = SymmetryKit::new(8)
        .with_jets(6)
        .with_transforms(3)
        .with_constituents(4..=20);
    let mut distinct = std::collections::BTreeSet::new();
    for jet in kit.jets() {
        let reference = logits(&model, &input(&jet, 0));
        assert_eq!(logits(&model, &input(&jet, 7)), reference, "padding");
        let mut reversed = jet.clone();
        reversed.reverse();
        assert_eq!(logits(&model, &input(&reversed, 0)), reference, "order");
        let mut rotated = jet.clone();
        rotated.rotate_left(jet.len() / 3);
        assert_eq!(logits(&model, &input(&rotated, 3)), reference, "order");
        distinct.extend(reference);
    }
    assert!(distinct.len() > 4, "constant logits: {distinct:?}");
}

#[test]
fn straight_through_gradients_reach_the_quantised_layers_only() {
    let varmap = VarMap::new();
    let model = quantised(&varmap);
    let kit = SymmetryKit::new(9).with_jets(4).with_constituents(6..=12);
    let mut loss = Tensor::new(0f32, &Device::Cpu).unwrap();
    for jet in kit.jets() {
        let out = model
            .forward_t(&input(&jet, 2), &mut Mode::Eval)
            .unwrap()
            .sum_all()
            .unwrap();
        loss = (loss + out).unwrap();
    }
    let grads = loss.backward().unwrap();
    let data = varmap.data().lock().unwrap();
    let norm = |name: &str| -> f64 {
        let var = data
            .get(name)
            .unwrap_or_else(|| panic!("no variable {name}"));
        grads.get(var.as_tensor()).map_or(0.0, |g| {
            g.to_dtype(DType::F64)
                .unwrap()
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f64>()
                .unwrap()
        })
    };
    for used in [
        "labels.weight",
        "blocks.0.message.linear.weight",
        "blocks.0.eq2to2.weight",
        "blocks.1.eq2to2.diag_bias",
        "readout.message.linear.weight",
        "readout.eq2to0.weight",
        "head.weight",
    ] {
        assert!(norm(used) > 0.0, "{used} gets no gradient");
    }
    for unused in [
        "embed.alphas",
        "embed.norm.weight",
        "blocks.0.eq2to2.alphas",
        "blocks.0.message.norm.weight",
        "readout.eq2to0.alphas",
    ] {
        assert_eq!(norm(unused), 0.0, "{unused} gets a gradient");
    }
}
