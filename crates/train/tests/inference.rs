//! The inference model (`noether_train::inference_model`, PyTorch's `torch.no_grad()`):
//! the same logits as the trainable model, no autograd graph, and it follows the trainable
//! model's variables as they change (optimizer steps, checkpoint loads, BatchNorm
//! statistics).

mod common;

use common::{bits, first_val_batch, tiny_lorentznet};

use noether_equivariant::Mode;
use noether_train::{build_model, forward_batch, inference_model, TrainConfig};

fn check(config: &TrainConfig) {
    let (model, varmap) = build_model(config, 3).unwrap();
    let inference = inference_model(config, &varmap).unwrap();
    let batch = first_val_batch(&model, config);
    let trained = forward_batch(&model, &batch, &mut Mode::Eval).unwrap();
    let detached = forward_batch(&inference, &batch, &mut Mode::Eval).unwrap();
    assert!(
        trained.track_op(),
        "the trainable model must record a graph"
    );
    assert!(!detached.track_op(), "the inference model recorded a graph");
    assert_eq!(bits(&trained), bits(&detached));

    // A training-mode pass updates the BatchNorm running statistics, and every
    // variable moves as an optimizer step would: the inference model follows both.
    let mut rng = rand::SeedableRng::seed_from_u64(1);
    forward_batch(&model, &batch, &mut Mode::Train(&mut rng)).unwrap();
    for (name, var) in varmap.data().lock().unwrap().iter() {
        if name.ends_with("lora_B.weight") {
            // Fresh adapters are zero; give them a value so that they matter.
            var.set(&(var.as_tensor().ones_like().unwrap() * 0.05).unwrap())
                .unwrap();
        } else if !noether_equivariant::is_buffer(name) {
            var.set(&(var.as_tensor() * 1.01).unwrap()).unwrap();
        }
    }
    let trained_after = forward_batch(&model, &batch, &mut Mode::Eval).unwrap();
    let detached_after = forward_batch(&inference, &batch, &mut Mode::Eval).unwrap();
    assert_ne!(bits(&trained), bits(&trained_after));
    assert_eq!(bits(&trained_after), bits(&detached_after));
}

#[test]
fn inference_model_matches_without_a_graph() {
    check(&tiny_lorentznet(""));
}

#[test]
fn inference_model_keeps_lora_adapters() {
    check(&tiny_lorentznet("[lora]\nr = 2\nalpha = 4.0"));
}
