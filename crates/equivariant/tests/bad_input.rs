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
