//! Reproducible weight initialisation. candle's CPU RNG cannot be seeded, so a
//! [`VarBuilder`] from [`seeded_varbuilder`] draws every new variable from a ChaCha
//! stream keyed by the run seed and the variable's name: the same seed gives the same
//! weights, whatever order the layers are built in.

use candle_core::{DType, Device, Result, Shape, Tensor, Var};
use candle_nn::init::{FanInOut, NormalOrUniform};
use candle_nn::{Init, VarBuilder, VarMap};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Which variables are handed out detached from the autograd graph.
type FrozenFn = Box<dyn Fn(&str) -> bool + Send + Sync>;

/// A [`VarMap`] whose missing variables are created from a seeded RNG.
struct SeededVarMap {
    varmap: VarMap,
    seed: u64,
    frozen: Option<FrozenFn>,
}

impl SeededVarMap {
    fn rng_for(&self, name: &str) -> ChaCha8Rng {
        // FNV-1a: a hash fixed by definition, so the weights do not change with the
        // toolchain (std's DefaultHasher makes no such promise).
        let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        ChaCha8Rng::seed_from_u64(self.seed ^ hash)
    }

    fn draw(&self, shape: &Shape, name: &str, init: Init) -> Vec<f64> {
        let n = shape.elem_count();
        let mut rng = self.rng_for(name);
        let uniform = |rng: &mut ChaCha8Rng, lo: f64, up: f64| -> Vec<f64> {
            (0..n).map(|_| rng.random_range(lo..=up)).collect()
        };
        let normal = |rng: &mut ChaCha8Rng, mean: f64, std: f64| -> Vec<f64> {
            (0..n)
                .map(|_| {
                    // Box-Muller: avoids a rand_distr dependency for one distribution.
                    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
                    let u2: f64 = rng.random_range(0.0..1.0);
                    mean + std * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
                })
                .collect()
        };
        match init {
            Init::Const(c) => vec![c; n],
            Init::Uniform { lo, up } => uniform(&mut rng, lo, up),
            Init::Randn { mean, stdev } => normal(&mut rng, mean, stdev),
            Init::Kaiming {
                dist,
                fan,
                non_linearity,
            } => {
                let fan = match fan {
                    FanInOut::FanIn | FanInOut::FanOut => fan.for_shape(shape),
                };
                let std = non_linearity.gain() / (fan.max(1) as f64).sqrt();
                match dist {
                    NormalOrUniform::Uniform => {
                        let bound = 3f64.sqrt() * std;
                        uniform(&mut rng, -bound, bound)
                    }
                    NormalOrUniform::Normal => normal(&mut rng, 0.0, std),
                }
            }
        }
    }
}

impl SeededVarMap {
    /// The variable's tensor, detached when frozen: it shares the variable's storage (so
    /// loading a checkpoint into the `VarMap` still reaches the model) but backward
    /// computes no gradient for it.
    fn hand_out(&self, name: &str, var: &Var) -> Tensor {
        match &self.frozen {
            Some(frozen) if frozen(name) => var.as_tensor().detach(),
            _ => var.as_tensor().clone(),
        }
    }
}

impl candle_nn::var_builder::SimpleBackend for SeededVarMap {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        init: Init,
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        let mut data = self.varmap.data().lock().expect("VarMap lock poisoned");
        if let Some(var) = data.get(name) {
            if var.shape() != &shape {
                candle_core::bail!(
                    "variable '{name}' has shape {:?}, requested {shape:?}",
                    var.shape()
                );
            }
            return Ok(self.hand_out(name, var));
        }
        let values = self.draw(&shape, name, init);
        let var = Var::from_tensor(&Tensor::from_vec(values, shape, device)?.to_dtype(dtype)?)?;
        let tensor = self.hand_out(name, &var);
        data.insert(name.to_owned(), var);
        Ok(tensor)
    }

    fn get_unchecked(&self, name: &str, _dtype: DType, _device: &Device) -> Result<Tensor> {
        let data = self.varmap.data().lock().expect("VarMap lock poisoned");
        match data.get(name) {
            Some(var) => Ok(var.as_tensor().clone()),
            None => candle_core::bail!("variable '{name}' does not exist"),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.varmap
            .data()
            .lock()
            .expect("VarMap lock poisoned")
            .contains_key(name)
    }
}

/// A [`VarBuilder`] that creates trainable variables in `varmap`, initialised as candle-nn
/// asks (PyTorch's Kaiming-uniform for linear weights, uniform biases, constants for
/// BatchNorm) but drawn from ChaCha8 seeded by `seed` and the variable name. Variables
/// already in `varmap` are returned as they are.
pub fn seeded_varbuilder(
    varmap: &VarMap,
    seed: u64,
    dtype: DType,
    device: &Device,
) -> VarBuilder<'static> {
    VarBuilder::from_backend(
        Box::new(SeededVarMap {
            varmap: varmap.clone(),
            seed,
            frozen: None,
        }),
        dtype,
        device.clone(),
    )
}

/// The variables already in `varmap`, for inference: every parameter detached, so a
/// forward pass records no autograd graph (PyTorch's `no_grad`) while sharing storage
/// with `varmap` (optimizer steps and checkpoint loads reach it). BatchNorm running
/// statistics stay variables so that the layer shares rather than copies them; it
/// detaches them itself in evaluation.
pub fn inference_varbuilder(varmap: &VarMap, dtype: DType, device: &Device) -> VarBuilder<'static> {
    seeded_varbuilder_frozen(varmap, 0, dtype, device, |name| !crate::is_buffer(name))
}

/// [`seeded_varbuilder`] for fine-tuning: variables for which `frozen(name)` holds are
/// handed to the model detached from the autograd graph, so backward skips their
/// gradients (they stay variables in `varmap`: loading and saving see them, and their
/// storage is shared, so a checkpoint loaded after the model is built still takes
/// effect). Never freeze buffers that the model updates in place through a copy, such
/// as BatchNorm running statistics.
pub fn seeded_varbuilder_frozen(
    varmap: &VarMap,
    seed: u64,
    dtype: DType,
    device: &Device,
    frozen: impl Fn(&str) -> bool + Send + Sync + 'static,
) -> VarBuilder<'static> {
    VarBuilder::from_backend(
        Box::new(SeededVarMap {
            varmap: varmap.clone(),
            seed,
            frozen: Some(Box::new(frozen)),
        }),
        dtype,
        device.clone(),
    )
}

/// Total number of scalar parameters in `varmap`, excluding BatchNorm running statistics
/// and counters (PyTorch's `sum(p.numel() for p in model.parameters())`).
pub fn parameter_count(varmap: &VarMap) -> usize {
    varmap
        .data()
        .lock()
        .expect("VarMap lock poisoned")
        .iter()
        .filter(|(name, _)| !crate::is_buffer(name))
        .map(|(_, var)| var.elem_count())
        .sum()
}
