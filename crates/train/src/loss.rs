//! The training losses and the signal score: weighted cross-entropy, knowledge
//! distillation, softmax(logits)[:, 1].

use candle_core::{DType, Tensor, D};

use crate::error::{Context, Result};

/// Weighted cross-entropy: `sum_i w_i (-log softmax(logits_i)[y_i]) / sum_i w_i`.
///
/// # Errors
/// Shape mismatches.
pub fn cross_entropy(logits: &Tensor, labels: &[u8], weights: &[f32]) -> Result<Tensor> {
    let n = labels.len();
    let device = logits.device();
    let targets: Vec<u32> = labels.iter().map(|&l| u32::from(l)).collect();
    let targets = Tensor::from_vec(targets, (n, 1), device).context("labels")?;
    let w = Tensor::from_slice(weights, n, device)
        .and_then(|w| w.to_dtype(logits.dtype()))
        .context("weights")?;
    let log_p = candle_nn::ops::log_softmax(logits, D::Minus1).context("log_softmax")?;
    let picked = log_p
        .gather(&targets, 1)
        .and_then(|t| t.squeeze(1))
        .context("gather")?;
    let total: f32 = weights.iter().sum();
    (picked * w)
        .and_then(|t| t.sum_all())
        .and_then(|t| t.affine(-1.0 / f64::from(total.max(f32::MIN_POSITIVE)), 0.0))
        .context("loss")
}

/// Knowledge-distillation loss (Hinton et al. 2015, as in `torch` recipes):
/// `(1 - alpha) CE(student, y) + alpha T^2 sum_i w_i KL(softmax(t_i / T) || softmax(s_i / T)) / sum_i w_i`.
/// The T^2 keeps the soft term's gradient scale independent of T.
///
/// # Errors
/// Shape mismatches between student and teacher logits.
pub fn distillation_loss(
    student: &Tensor,
    teacher: &Tensor,
    labels: &[u8],
    weights: &[f32],
    temperature: f64,
    alpha: f64,
) -> Result<Tensor> {
    let hard = cross_entropy(student, labels, weights)?;
    let n = labels.len();
    let w = Tensor::from_slice(weights, n, student.device())
        .and_then(|w| w.to_dtype(student.dtype()))
        .context("weights")?;
    let total: f32 = weights.iter().sum();
    let soft = || -> candle_core::Result<Tensor> {
        let log_s = candle_nn::ops::log_softmax(&(student / temperature)?, D::Minus1)?;
        let log_t = candle_nn::ops::log_softmax(&(teacher.detach() / temperature)?, D::Minus1)?;
        let kl = (log_t.exp()? * (log_t - log_s)?)?.sum(D::Minus1)?;
        (kl * w)?.sum_all()?.affine(
            temperature * temperature / f64::from(total.max(f32::MIN_POSITIVE)),
            0.0,
        )
    };
    let soft = soft().context("distillation term")?;
    ((hard * (1.0 - alpha)).and_then(|h| h + (soft * alpha)?)).context("distillation loss")
}

/// Signal probabilities softmax(logits)[:, 1] of a batch.
///
/// # Errors
/// Shape mismatches.
pub fn signal_scores(logits: &Tensor) -> Result<Vec<f64>> {
    let p = candle_nn::ops::softmax(logits, D::Minus1).context("softmax")?;
    let s = p
        .narrow(1, 1, 1)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_dtype(DType::F64))
        .and_then(|t| t.to_vec1::<f64>())
        .context("scores")?;
    Ok(s)
}

/// The value of a scalar loss tensor of any float dtype.
///
/// # Errors
/// A tensor that is not a scalar.
pub fn scalar(loss: &Tensor) -> Result<f64> {
    loss.to_dtype(DType::F64)
        .and_then(|t| t.to_scalar::<f64>())
        .context("loss")
}
