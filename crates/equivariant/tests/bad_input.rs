//! Bad input gets typed errors naming the input or the checkpoint tensor.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use noether_equivariant::{LorentzNet, LorentzNetConfig, LorentzNetInput, ModelError};

#[test]
fn wrong_shapes_and_nan_inputs_are_named() {
    let err = LorentzNetInput::from_flat(&[1.0; 7], &[1.0; 2], 1, 2, 2).unwrap_err();
    assert!(
        matches!(
            err,
            ModelError::BadInput {
                input: "momenta",
                ..
            }
        ),
        "{err}"
    );
    let err = LorentzNetInput::from_flat(&[1.0; 8], &[1.0; 3], 1, 2, 2).unwrap_err();
    assert!(
        matches!(err, ModelError::BadInput { input: "mask", .. }),
        "{err}"
    );
    let mut momenta = [1.0_f32; 8];
    momenta[5] = f32::NAN;
    let err = LorentzNetInput::from_flat(&momenta, &[1.0; 2], 1, 2, 2).unwrap_err();
    assert!(
        matches!(err, ModelError::NonFinite { input: "momenta" }),
        "{err}"
    );
}

#[test]
fn missing_or_misshaped_checkpoint_tensors_are_named() {
    let vb = VarBuilder::from_tensors(HashMap::new(), DType::F32, &Device::Cpu);
    let err = LorentzNet::new(&LorentzNetConfig::default(), &vb)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("LGEBs.0") || err.contains("embedding"),
        "{err}"
    );

    let wrong = Tensor::zeros((5, 2), DType::F32, &Device::Cpu).unwrap();
    let tensors = HashMap::from([("embedding.weight".to_owned(), wrong)]);
    let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
    let config = LorentzNetConfig {
        n_layers: 0,
        ..LorentzNetConfig::default()
    };
    let err = LorentzNet::new(&config, &vb).unwrap_err().to_string();
    assert!(err.contains("embedding"), "{err}");
}

#[test]
fn pelican_flow_and_mlp_inputs_are_checked() {
    use candle_nn::VarMap;
    use noether_equivariant::{
        seeded_varbuilder, FlowConfig, FlowInput, FlowNetwork, Mlp, MlpConfig, Mode, Pelican,
        PelicanConfig, PelicanInput,
    };
    let err = PelicanInput::from_flat(&[1.0; 12], &[1.0; 2], 1, 3, 2).unwrap_err();
    assert!(
        matches!(err, ModelError::BadInput { input: "mask", .. }),
        "{err}"
    );
    let mut momenta = [1.0_f32; 8];
    momenta[0] = f32::INFINITY;
    let err = FlowInput::from_flat(&momenta, &[1.0; 2], 1, 2).unwrap_err();
    assert!(
        matches!(err, ModelError::NonFinite { input: "momenta" }),
        "{err}"
    );

    let varmap = VarMap::new();
    let vb = seeded_varbuilder(&varmap, 0, DType::F32, &Device::Cpu);
    let pelican = Pelican::new(&PelicanConfig::tiny(), &vb.pp("p")).unwrap();
    let good = PelicanInput::from_flat(&[1.0; 12], &[1.0; 3], 1, 3, 2).unwrap();
    // Dots of 4 nodes with a mask of 3: the mismatch is named.
    let bad = PelicanInput {
        dots: Tensor::zeros((1, 4, 4), DType::F32, &Device::Cpu).unwrap(),
        ..good
    };
    let err = pelican.forward(&bad, &mut Mode::Eval).unwrap_err();
    assert!(
        matches!(err, ModelError::BadInput { input: "dots", .. }),
        "{err}"
    );

    let flow = FlowNetwork::new(&FlowConfig::default(), &vb.pp("f")).unwrap();
    let bad = FlowInput {
        features: Tensor::zeros((1, 3, 2), DType::F32, &Device::Cpu).unwrap(),
        mask: Tensor::ones((1, 3), DType::F32, &Device::Cpu).unwrap(),
    };
    let err = flow.forward(&bad, &mut Mode::Eval).unwrap_err();
    assert!(
        matches!(
            err,
            ModelError::BadInput {
                input: "features",
                ..
            }
        ),
        "{err}"
    );

    let mlp = Mlp::new(&MlpConfig::default(), &vb.pp("m")).unwrap();
    let x = Tensor::zeros((2, 5), DType::F32, &Device::Cpu).unwrap();
    let err = mlp.forward(&x, &mut Mode::Eval).unwrap_err();
    assert!(
        matches!(
            err,
            ModelError::BadInput {
                input: "features",
                ..
            }
        ),
        "{err}"
    );

    let err = FlowNetwork::new(
        &FlowConfig {
            phi_sizes: vec![],
            ..FlowConfig::default()
        },
        &vb.pp("g"),
    )
    .unwrap_err();
    assert!(err.to_string().contains("phi_sizes"), "{err}");
}

#[test]
fn only_models_with_a_fixed_point_form_accept_quantisation() {
    assert_eq!(
        noether_equivariant::quantizable(),
        ["pelican", "pfn", "efn", "mlp", "lgatr_slim"]
    );
    let varmap = candle_nn::VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let config = noether_equivariant::ModelConfig::LorentzNet(
        noether_equivariant::LorentzNetConfig::default(),
    );
    let mut model = noether_equivariant::Tagger::new(&config, &vb).unwrap();
    let err = model
        .quantize(&noether_quant::QuantConfig::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("model \"lorentznet\" has no fixed-point form")
            && err.contains("supports pelican, pfn, efn, mlp, lgatr_slim"),
        "{err}"
    );
    let err = model.quant_graph().unwrap_err().to_string();
    assert!(err.contains("was not trained with quantisation"), "{err}");
}

#[test]
fn lgatr_slim_settings_without_a_fixed_point_meaning_are_refused_by_name() {
    use noether_equivariant::{LGatrSlimConfig, ModelConfig, Tagger};
    use noether_quant::{LayerOverride, QuantConfig};
    let small = || LGatrSlimConfig {
        hidden_v_channels: 2,
        hidden_s_channels: 8,
        num_blocks: 1,
        num_heads: 2,
        ..LGatrSlimConfig::default()
    };
    let quantize = |config: LGatrSlimConfig, layer: Option<(&str, LayerOverride)>| {
        let varmap = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let mut model = Tagger::new(&ModelConfig::LGatrSlim(config), &vb).unwrap();
        let quant = QuantConfig {
            layers: layer.into_iter().map(|(k, o)| (k.to_owned(), o)).collect(),
            ..QuantConfig::default()
        };
        model.quantize(&quant).map_err(|e| e.to_string())
    };
    quantize(small(), None).unwrap();
    let err = quantize(
        LGatrSlimConfig {
            dropout_prob: Some(0.1),
            ..small()
        },
        None,
    )
    .unwrap_err();
    assert!(err.contains("has no dropout"), "{err}");
    let err = quantize(
        LGatrSlimConfig {
            mean_aggregation: true,
            ..small()
        },
        None,
    )
    .unwrap_err();
    assert!(err.contains("mean_aggregation = false"), "{err}");
    let wide = LayerOverride {
        table_input: Some("ap_fixed<18,6>".parse().unwrap()),
        ..LayerOverride::default()
    };
    let err = quantize(small(), Some(("blocks.0.attention.softmax", wide.clone()))).unwrap_err();
    assert!(
        err.contains(
            "layer blocks.0.attention.softmax: table_input ap_fixed<18,6,AP_TRN,AP_WRAP> has \
             18 bits"
        ),
        "{err}"
    );
    let wide_sum = LayerOverride {
        accum: Some("ap_ufixed<18,6>".parse().unwrap()),
        ..LayerOverride::default()
    };
    let err = quantize(small(), Some(("blocks.0.attention.softmax", wide_sum))).unwrap_err();
    assert!(
        err.contains(
            "layer blocks.0.attention.softmax: accum (the sum of numerators, the reciprocal \
             table's input) ap_ufixed<18,6,AP_TRN,AP_WRAP> has 18 bits"
        ),
        "{err}"
    );
    let err = quantize(small(), Some(("blocks.0.norm3", wide))).unwrap_err();
    assert!(
        err.contains("layers.\"blocks.0.norm3\": the model has no layer blocks.0.norm3")
            && err.contains("blocks.0.attention.softmax"),
        "{err}"
    );
    // Sums wider than an f64 mantissa: 32-bit weights and results (the gated unit's
    // Minkowski products of two 32-bit results).
    let wide_weights = LayerOverride {
        weight: Some("ap_fixed<32,4>".parse().unwrap()),
        result: Some("ap_fixed<32,8>".parse().unwrap()),
        ..LayerOverride::default()
    };
    let err = quantize(
        small(),
        Some(("blocks.0.mlp.layers.0.linear", wide_weights)),
    )
    .unwrap_err();
    assert!(
        err.starts_with(
            "layer blocks.0.mlp.layers.0: a vector gate spans 67 bits, more than the 53"
        ),
        "{err}"
    );
}

#[test]
fn pelican_settings_without_a_fixed_point_meaning_are_refused_by_name() {
    use noether_equivariant::{ModelConfig, PelicanConfig, Tagger};
    use noether_quant::{LayerOverride, QuantConfig};
    // The default precisions with one override of `layer`.
    let quantize = |config: PelicanConfig, layer: Option<(&str, LayerOverride)>| {
        let varmap = candle_nn::VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let mut model = Tagger::new(&ModelConfig::Pelican(config), &vb).unwrap();
        let quant = QuantConfig {
            layers: layer.into_iter().map(|(k, o)| (k.to_owned(), o)).collect(),
            ..QuantConfig::default()
        };
        model
            .quantize(&quant)
            .map(|()| model)
            .map_err(|e| e.to_string())
    };
    let t = |s: &str| Some(s.parse().unwrap());
    let result = |s| LayerOverride {
        result: t(s),
        ..LayerOverride::default()
    };
    let weight = |s| LayerOverride {
        weight: t(s),
        ..LayerOverride::default()
    };
    let tiny = || PelicanConfig {
        n_avg: 32.0,
        ..PelicanConfig::tiny()
    };
    // n_avg = 50 is not a shift.
    let err = quantize(PelicanConfig::tiny(), None).unwrap_err();
    assert!(
        err.starts_with("model setting 'n_avg' = 50: under quantisation"),
        "{err}"
    );
    let err = quantize(
        PelicanConfig {
            dropout: 0.1,
            ..tiny()
        },
        None,
    )
    .unwrap_err();
    assert!(err.starts_with("model setting 'dropout' = 0.1"), "{err}");
    let err = quantize(tiny(), Some(("labels", result("ap_fixed<8,4>")))).unwrap_err();
    assert!(
        err.starts_with("[quant] layers.\"labels\".result: ap_fixed<8,4,AP_TRN,AP_WRAP>"),
        "{err}"
    );
    // Overrides may name the equivariant layers, and nothing else.
    let err = quantize(tiny(), Some(("blocks.7.eq2to2", weight("ap_fixed<6,2>")))).unwrap_err();
    assert!(
        err.contains("the model has no layer blocks.7.eq2to2")
            && err.contains("blocks.1.eq2to2, readout.eq2to0"),
        "{err}"
    );
    let model = quantize(tiny(), Some(("blocks.1.eq2to2", weight("ap_fixed<6,2>")))).unwrap();
    let graph = model.quant_graph().unwrap();
    let blocks = &graph.pairs.as_ref().unwrap().blocks;
    assert_eq!(
        blocks[1].1.precision.weight.to_string(),
        "ap_fixed<6,2,AP_TRN,AP_WRAP>"
    );
    assert_ne!(blocks[0].1.precision.weight, blocks[1].1.precision.weight);
    assert_eq!(graph.pairs.as_ref().unwrap().shift, 5);
}
