//! Graph builders the engine tests share.
#![allow(dead_code)]

use noether_quant::{
    Activation, Dense, FixedType, LayerPrecision, QuantGraph, SlimAttentionLayer, SlimBlockLayer,
    SlimGluLayer, SlimLinearLayer, SlimNormLayer, SlimStage, Table, TableFn,
};

pub fn t(s: &str) -> FixedType {
    s.parse().unwrap()
}

pub fn precision() -> LayerPrecision {
    LayerPrecision {
        weight: t("ap_fixed<8,3,AP_RND_CONV,AP_SAT>"),
        bias: t("ap_fixed<8,3,AP_RND_CONV,AP_SAT>"),
        accum: Some(t("ap_fixed<24,12,AP_RND_CONV,AP_SAT>")),
        result: t("ap_fixed<12,6,AP_RND_CONV,AP_SAT>"),
    }
}

/// A grid value of `ap_fixed<8,3>` in [-0.5, 0.5].
pub fn w(k: usize) -> f64 {
    ((k as f64 * 0.77).sin() * 16.0).round() / 32.0
}

pub fn dense(name: &str, inputs: usize, outputs: usize, relu: bool) -> Dense {
    Dense {
        name: name.into(),
        inputs,
        outputs,
        weight: (0..inputs * outputs).map(w).collect(),
        bias: (0..outputs).map(|k| w(k + 100)).collect(),
        precision: precision(),
        relu,
    }
}

pub fn slim_linear(
    name: &str,
    (iv, ov): (usize, usize),
    (is, os): (usize, usize),
) -> SlimLinearLayer {
    let mut vectors = dense(&format!("{name}.weight_v"), iv, ov, false);
    vectors.bias = vec![0.0; ov];
    SlimLinearLayer {
        name: name.into(),
        vectors: Some(vectors),
        scalars: Some(dense(&format!("{name}.linear_s"), is, os, false)),
        bias: true,
    }
}

pub fn table(function: TableFn) -> Table {
    Table {
        function,
        input: t("ap_fixed<10,5,AP_RND_CONV,AP_SAT>"),
        output: t("ap_fixed<8,3,AP_RND_CONV,AP_SAT>"),
    }
}

pub fn norm(name: &str, (v, s): (usize, usize), affine: bool) -> SlimNormLayer {
    SlimNormLayer {
        name: name.into(),
        channels: (v, s),
        gains: affine.then(|| ((0..v).map(w).collect(), (0..s).map(|k| w(k + 9)).collect())),
        gain: t("ap_fixed<8,3,AP_RND_CONV,AP_SAT>"),
        table: table(TableFn::InvRms {
            channels: v + s,
            epsilon: 0.01,
        }),
        result: t("ap_fixed<12,6,AP_RND_CONV,AP_SAT>"),
    }
}

/// One L-GATr-slim block on 2 vector and 8 scalar channels, two heads.
pub fn slim() -> QuantGraph {
    let result = t("ap_fixed<12,6,AP_RND_CONV,AP_SAT>");
    let gate = |act| table(TableFn::Activation { act, scale: 1.0 });
    QuantGraph {
        model: "lgatr_slim".into(),
        input: t("ap_fixed<10,5,AP_RND_CONV,AP_SAT>"),
        particles: None,
        pairs: None,
        slim: Some(SlimStage {
            scalars: 8,
            linear_in: slim_linear("linear_in", (1, 2), (8, 8)),
            blocks: vec![SlimBlockLayer {
                name: "blocks.0".into(),
                norm1: norm("blocks.0.norm1", (2, 8), true),
                attention: SlimAttentionLayer {
                    name: "blocks.0.attention".into(),
                    heads: 2,
                    head_channels: (1, 4),
                    linear_in: slim_linear("blocks.0.attention.linear_in", (2, 6), (8, 24)),
                    norm: norm("blocks.0.attention.norm", (1, 4), false),
                    exp: table(TableFn::Exp { scale: 0.35 }),
                    recip: table(TableFn::Recip),
                    probabilities: t("ap_ufixed<8,1,AP_RND_CONV,AP_SAT>"),
                    heads_result: result,
                    linear_out: slim_linear("blocks.0.attention.linear_out", (2, 2), (8, 8)),
                },
                norm2: norm("blocks.0.norm2", (2, 8), true),
                glus: vec![SlimGluLayer {
                    name: "blocks.0.mlp.layers.0".into(),
                    linear: slim_linear("blocks.0.mlp.layers.0.linear", (2, 12), (8, 32)),
                    gate_v: gate(Activation::Sigmoid),
                    gate_s: gate(Activation::Gelu),
                    result,
                }],
                last: slim_linear("blocks.0.mlp.layers.1", (4, 2), (16, 8)),
                residual: result,
            }],
        }),
        jet_features: 0,
        jet: vec![dense("linear_out.linear_s", 8, 2, false)],
    }
}

/// Rows of `tokens` tokens for a slim graph: a four-vector and 8 scalars each.
pub fn tokens(n: usize) -> (Vec<f32>, Vec<f32>) {
    let value = |k: usize| ((k as f32) * 0.37).sin();
    ((0..n * 12).map(value).collect(), vec![1.0; n])
}
