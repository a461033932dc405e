//! AdamW, SGD (momentum, Nesterov) and Lion with decoupled weight decay, learning-rate
//! multipliers by parameter-name regex, and global-norm gradient clipping. The update
//! rules are PyTorch's (`torch.optim.AdamW`, `torch.optim.SGD` with dampening 0, with
//! SGD's weight decay decoupled as in AdamW) and `lion-pytorch`'s. State tensors are exposed for checkpoints.
//! AdamW on contiguous f32/f64 CPU tensors runs as one pass over the values
//! (`adamw_kernel`), elsewhere as candle operations.

use std::collections::HashMap;

use candle_core::{Tensor, Var};
use candle_nn::VarMap;
use noether_equivariant::is_buffer;
use regex::Regex;

use crate::adamw_kernel::{adamw_values, AdamWStep};
use crate::adapt::{layer_decay_mult, Freeze};
use crate::config::{OptimConfig, OptimizerName, SnrGate, TrainConfig};
use crate::error::{invalid, Context, Result};

/// One trainable parameter.
#[derive(Debug, Clone)]
pub struct Param {
    /// Its name in the model (`LGEBs.0.phi_e.0.weight`).
    pub name: String,
    /// The variable.
    pub var: Var,
    /// Learning-rate multiplier from the parameter groups.
    pub lr_mult: f64,
}

/// The trainable parameters of `varmap` in name order (BatchNorm running statistics and
/// frozen names excluded: `optim.freeze`, and under LoRA all but the adapters and the
/// head), each with the multiplier of the first matching group (1 when none matches)
/// times its layer-wise decay `optim.layer_decay^(D - depth)`.
///
/// # Errors
/// [`crate::TrainError::InvalidConfig`] for a pattern that is not a regex.
pub fn parameters(varmap: &VarMap, train: &TrainConfig) -> Result<Vec<Param>> {
    let config = &train.optim;
    let model = &train.model;
    let freeze = Freeze::new(train)?;
    let groups = config
        .groups
        .iter()
        .enumerate()
        .map(|(k, g)| {
            Regex::new(&g.pattern).map(|r| (r, g.lr_mult)).map_err(|e| {
                invalid(
                    &format!("optim.groups[{k}].pattern"),
                    &g.pattern,
                    &e.to_string(),
                )
            })
        })
        .collect::<Result<Vec<_>>>()?;
    trainable(varmap)
        .into_iter()
        .filter(|p| !freeze.is_frozen(&p.name))
        .map(|mut p| {
            let group = groups
                .iter()
                .find(|(r, _)| r.is_match(&p.name))
                .map_or(1.0, |(_, m)| *m);
            p.lr_mult = group * layer_decay_mult(model, &p.name, config.layer_decay)?;
            Ok(p)
        })
        .collect()
}

/// Every trainable variable of `varmap` (BatchNorm running statistics excluded) in name
/// order, each with multiplier 1: what [`parameters`] starts from, and what a script
/// without a [`TrainConfig`] steps.
pub fn trainable(varmap: &VarMap) -> Vec<Param> {
    let data = varmap.data().lock().expect("VarMap lock poisoned");
    let mut params: Vec<Param> = data
        .iter()
        .filter(|(name, _)| !is_buffer(name))
        .map(|(name, var)| Param {
            name: name.clone(),
            var: var.clone(),
            lr_mult: 1.0,
        })
        .collect();
    params.sort_by(|a, b| a.name.cmp(&b.name));
    params
}

/// Optimizer state of one parameter.
#[derive(Debug, Clone, Default)]
struct State {
    /// Adam's first moment, or SGD's momentum buffer.
    first: Option<Tensor>,
    /// Adam's second moment.
    second: Option<Tensor>,
    /// The SNR gate's gradient-variance EMA.
    third: Option<Tensor>,
}

/// AdamW or SGD over a fixed list of parameters.
#[derive(Debug)]
pub struct Optimizer {
    config: OptimConfig,
    params: Vec<Param>,
    state: Vec<State>,
    steps: usize,
}

impl Optimizer {
    /// An optimizer with empty state.
    pub fn new(params: Vec<Param>, config: &OptimConfig) -> Self {
        let state = vec![State::default(); params.len()];
        Self {
            config: config.clone(),
            params,
            state,
            steps: 0,
        }
    }

    /// The parameters, in order.
    pub fn params(&self) -> &[Param] {
        &self.params
    }

    /// Optimizer steps taken.
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// Gradients of the parameters from a backward pass (`None` where a parameter got no
    /// gradient), in parameter order.
    pub fn gradients(&self, grads: &candle_core::backprop::GradStore) -> Vec<Option<Tensor>> {
        self.params
            .iter()
            .map(|p| grads.get(p.var.as_tensor()).cloned())
            .collect()
    }

    /// Scales the gradients so that their global L2 norm is at most `max_norm`
    /// (PyTorch's `clip_grad_norm_`, with its 1e-6 guard); returns the norm before.
    ///
    /// # Errors
    /// Only from the tensor backend.
    pub fn clip(grads: &mut [Option<Tensor>], max_norm: f64) -> Result<f64> {
        let mut total = 0.0;
        for g in grads.iter().flatten() {
            total += g
                .sqr()
                .and_then(|t| t.sum_all())
                .and_then(|t| t.to_dtype(candle_core::DType::F64))
                .and_then(|t| t.to_scalar::<f64>())
                .context("gradient norm")?;
        }
        let norm = total.sqrt();
        if max_norm > 0.0 && norm > max_norm {
            let scale = max_norm / (norm + 1e-6);
            for g in grads.iter_mut().flatten() {
                *g = (&*g * scale).context("clip")?;
            }
        }
        Ok(norm)
    }

    /// One update with base learning rate `lr` (times each parameter's multiplier).
    ///
    /// # Errors
    /// A gradient whose shape is not its parameter's, naming the parameter (checked for
    /// all before any parameter, moment or step count changes); otherwise only from the
    /// tensor backend.
    pub fn step(&mut self, grads: &[Option<Tensor>], lr: f64) -> Result<()> {
        for (param, grad) in self.params.iter().zip(grads) {
            if let Some(g) = grad.as_ref().filter(|g| g.dims() != param.var.dims()) {
                return Err(candle_core::Error::Msg(format!(
                    "gradient of shape {:?} for a parameter of shape {:?}",
                    g.dims(),
                    param.var.dims()
                )))
                .context(&param.name);
            }
        }
        self.steps += 1;
        let c = &self.config;
        let t = self.steps as i32;
        for ((param, state), grad) in self.params.iter().zip(&mut self.state).zip(grads) {
            let Some(g) = grad else { continue };
            let lr = lr * param.lr_mult;
            let w = param.var.as_tensor();
            if c.name == OptimizerName::AdamW {
                let step = AdamWStep {
                    betas: c.betas(),
                    eps: c.eps,
                    t,
                    lr,
                    weight_decay: c.weight_decay,
                };
                let moments = (state.first.as_ref(), state.second.as_ref());
                if let Some([w, m, v]) = adamw_values(w, g, moments, step).context(&param.name)? {
                    param.var.set(&w).context(&param.name)?;
                    (state.first, state.second) = (Some(m), Some(v));
                    continue;
                }
            }
            // Decoupled weight decay: w <- w (1 - lr wd).
            let w = (w * (1.0 - lr * c.weight_decay)).context("weight decay")?;
            let update = match c.name {
                OptimizerName::AdamW => adamw_direction(state, g, c, t).map(|(u, _)| u),
                OptimizerName::Sgd => sgd_direction(state, g, c),
                OptimizerName::CautiousAdamW => cautious_direction(state, g, c, t),
                OptimizerName::SnrAdamW => snr_direction(state, g, c, t),
                OptimizerName::Lion => lion_direction(state, g, c),
            }
            .context(&param.name)?;
            let new = (update * lr).and_then(|u| w - u).context("update")?;
            param.var.set(&new).context(&param.name)?;
        }
        Ok(())
    }
}

/// Adam's update direction m_hat / (sqrt(v_hat) + eps), updating the moments; also
/// returns m_hat.
fn adamw_direction(
    state: &mut State,
    g: &Tensor,
    c: &OptimConfig,
    t: i32,
) -> candle_core::Result<(Tensor, Tensor)> {
    let [b1, b2] = c.betas();
    let m = match &state.first {
        Some(m) => ((m * b1)? + (g * (1.0 - b1))?)?,
        None => (g * (1.0 - b1))?,
    };
    let v = match &state.second {
        Some(v) => ((v * b2)? + (g.sqr()? * (1.0 - b2))?)?,
        None => (g.sqr()? * (1.0 - b2))?,
    };
    let m_hat = (&m / (1.0 - b1.powi(t)))?;
    let v_hat = (&v / (1.0 - b2.powi(t)))?;
    let u = (&m_hat / (v_hat.sqrt()? + c.eps)?)?;
    state.first = Some(m);
    state.second = Some(v);
    Ok((u, m_hat))
}

/// Cautious AdamW: AdamW's direction where it agrees in sign with the gradient,
/// rescaled by the inverse fraction kept (at least 1e-3).
fn cautious_direction(
    state: &mut State,
    g: &Tensor,
    c: &OptimConfig,
    t: i32,
) -> candle_core::Result<Tensor> {
    let (u, _) = adamw_direction(state, g, c, t)?;
    let mask = (&u * g)?.gt(0.0)?.to_dtype(u.dtype())?;
    let kept = mask
        .mean_all()?
        .to_dtype(candle_core::DType::F64)?
        .to_scalar::<f64>()?;
    (u * mask)? / kept.max(1e-3)
}

/// SNR-gated AdamW: AdamW's direction times the gate of the first moment's
/// signal-to-noise ratio against the EMA of `(g - m_hat)^2`.
fn snr_direction(
    state: &mut State,
    g: &Tensor,
    c: &OptimConfig,
    t: i32,
) -> candle_core::Result<Tensor> {
    let (u, m_hat) = adamw_direction(state, g, c, t)?;
    let centred = (g - &m_hat)?.sqr()?;
    let s = match &state.third {
        Some(s) => ((s * c.snr_rho)? + (centred * (1.0 - c.snr_rho))?)?,
        None => (centred * (1.0 - c.snr_rho))?,
    };
    // Bias-corrected like Adam's moments, so that the gate means the same from step 1.
    let s_hat = (&s / (1.0 - c.snr_rho.powi(t)))?;
    let signal = m_hat.sqr()?;
    let gate = match c.snr_gate {
        SnrGate::Hard => signal.gt(&(&s_hat * c.snr_alpha)?)?.to_dtype(u.dtype())?,
        // m_hat^2 / (m_hat^2 + s), taken as 1 where both vanish (the update is 0 there).
        SnrGate::Smooth => {
            let total = (&signal + &s_hat)?;
            let safe = total.maximum(f64::from(f32::MIN_POSITIVE))?;
            let zero = total.eq(0.0)?;
            zero.where_cond(&total.ones_like()?, &(signal / safe)?)?
        }
    };
    state.third = Some(s);
    u * gate
}

/// Lion's direction `sign(b1 m + (1 - b1) g)`, then its momentum `m = b2 m + (1 - b2) g`
/// (`lion-pytorch`'s order; the momentum starts at zero, with no bias correction).
fn lion_direction(state: &mut State, g: &Tensor, c: &OptimConfig) -> candle_core::Result<Tensor> {
    let [b1, b2] = c.betas();
    let zero = || g.zeros_like();
    let m = state.first.clone().map_or_else(zero, Ok)?;
    let u = ((&m * b1)? + (g * (1.0 - b1))?)?.sign()?;
    state.first = Some(((m * b2)? + (g * (1.0 - b2))?)?);
    Ok(u)
}

/// SGD's direction with momentum (buf = mu buf + g; Nesterov: g + mu buf).
fn sgd_direction(state: &mut State, g: &Tensor, c: &OptimConfig) -> candle_core::Result<Tensor> {
    let buf = match &state.first {
        Some(b) if c.momentum > 0.0 => ((b * c.momentum)? + g)?,
        _ => g.clone(),
    };
    let u = if c.nesterov {
        (g + (&buf * c.momentum)?)?
    } else {
        buf.clone()
    };
    state.first = Some(buf);
    Ok(u)
}

impl Optimizer {
    /// State tensors for a checkpoint: `optimizer.first.<name>`,
    /// `optimizer.second.<name>`.
    pub fn state_tensors(&self) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        for (p, s) in self.params.iter().zip(&self.state) {
            if let Some(m) = &s.first {
                out.insert(format!("optimizer.first.{}", p.name), m.clone());
            }
            if let Some(v) = &s.second {
                out.insert(format!("optimizer.second.{}", p.name), v.clone());
            }
            if let Some(v) = &s.third {
                out.insert(format!("optimizer.third.{}", p.name), v.clone());
            }
        }
        out
    }

    /// Restores state saved by [`Optimizer::state_tensors`] and the step count, on each
    /// parameter's device and in its dtype (checkpoints are read onto the CPU).
    ///
    /// # Errors
    /// Only from the tensor backend.
    pub fn restore(&mut self, tensors: &HashMap<String, Tensor>, steps: usize) -> Result<()> {
        for (p, s) in self.params.iter().zip(&mut self.state) {
            let get = |kind: &str| -> Result<Option<Tensor>> {
                let key = format!("optimizer.{kind}.{}", p.name);
                tensors
                    .get(&key)
                    .map(|t| {
                        t.to_dtype(p.var.dtype())
                            .and_then(|t| t.to_device(p.var.device()))
                            .context(&key)
                    })
                    .transpose()
            };
            s.first = get("first")?;
            s.second = get("second")?;
            s.third = get("third")?;
        }
        self.steps = steps;
        Ok(())
    }
}

/// Adds two sets of gradients (in parameter order; an empty `sum` is the identity).
///
/// # Errors
/// Only from the tensor backend.
pub(crate) fn add_gradients(
    sum: Vec<Option<Tensor>>,
    grads: Vec<Option<Tensor>>,
) -> Result<Vec<Option<Tensor>>> {
    if sum.is_empty() {
        return Ok(grads);
    }
    sum.into_iter()
        .zip(grads)
        .map(|(a, b)| match (a, b) {
            (Some(a), Some(b)) => (a + b).map(Some),
            (a, b) => Ok(a.or(b)),
        })
        .collect::<candle_core::Result<_>>()
        .context("adding gradients")
}

/// Gradient agreement filtering over the micro-batches of one step: each micro-batch
/// gradient is added to the running sum only when its cosine distance `1 - cos` to that
/// sum is below `tau`.
#[derive(Debug, Default)]
pub struct AgreementFilter {
    tau: f64,
    sum: Vec<Option<Tensor>>,
    agreed: usize,
    offered: usize,
}

fn flat_dot(a: &[Option<Tensor>], b: &[Option<Tensor>]) -> Result<f64> {
    let mut total = 0.0;
    for (x, y) in a.iter().zip(b) {
        if let (Some(x), Some(y)) = (x, y) {
            total += (x * y)
                .and_then(|t| t.sum_all())
                .and_then(|t| t.to_dtype(candle_core::DType::F64))
                .and_then(|t| t.to_scalar::<f64>())
                .context("gradient agreement")?;
        }
    }
    Ok(total)
}

impl AgreementFilter {
    /// A filter with threshold `tau` on the cosine distance.
    pub fn new(tau: f64) -> Self {
        Self {
            tau,
            ..Self::default()
        }
    }

    /// Offers one micro-batch's gradients; returns whether they were fused.
    ///
    /// # Errors
    /// Only from the tensor backend.
    pub fn offer(&mut self, grads: Vec<Option<Tensor>>) -> Result<bool> {
        self.offered += 1;
        if self.sum.is_empty() {
            self.sum = grads;
            self.agreed = 1;
            return Ok(true);
        }
        let dot = flat_dot(&self.sum, &grads)?;
        let norms = (flat_dot(&self.sum, &self.sum)? * flat_dot(&grads, &grads)?).sqrt();
        let distance = if norms > 0.0 { 1.0 - dot / norms } else { 1.0 };
        if distance >= self.tau {
            return Ok(false);
        }
        self.sum = add_gradients(std::mem::take(&mut self.sum), grads)?;
        self.agreed += 1;
        Ok(true)
    }

    /// The mean of the agreed gradients, or `None` (skip the step) when no second
    /// micro-batch agreed with the first; resets the filter.
    ///
    /// # Errors
    /// Only from the tensor backend.
    pub fn take(&mut self) -> Result<Option<Vec<Option<Tensor>>>> {
        let (sum, agreed, offered) = (std::mem::take(&mut self.sum), self.agreed, self.offered);
        self.agreed = 0;
        self.offered = 0;
        if agreed < 2 && offered >= 2 {
            return Ok(None);
        }
        let mean = sum
            .into_iter()
            .map(|g| {
                g.map(|g| (g / agreed as f64).context("gradient agreement"))
                    .transpose()
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(mean))
    }
}
