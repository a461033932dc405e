//! What the models with a fixed-point form share: setting every linear layer's
//! precisions from the `[quant]` section and reading a quantised layer back as the
//! hardware description ([`noether_quant::Dense`]).

use candle_core::{DType, Tensor};
use noether_quant::{fake_quantize, Dense, FixedType, QuantConfig};

use crate::error::{Context, Result};
use crate::linear::{Linear, LinearLayers};

/// Sets the precisions of every linear layer of `model` (overrides by path), after
/// checking that every override names one of its linear layers or one of `others` (the
/// model's other quantised layers).
///
/// # Errors
/// [`crate::ModelError::Quant`] naming an unknown layer.
pub(crate) fn set_precisions(
    model: &mut impl LinearLayers,
    quant: &QuantConfig,
    others: &[String],
) -> Result<()> {
    let mut layers = model.linear_layers_mut();
    let paths: Vec<String> = layers
        .iter()
        .map(|(p, _)| p.clone())
        .chain(others.iter().cloned())
        .collect();
    quant.check_layers(&paths)?;
    for (path, layer) in &mut layers {
        layer.set_precision(Some(quant.layer(path)));
    }
    Ok(())
}

/// `x` in f64, rounded to `ty`: how a quantised model takes its inputs.
pub(crate) fn quantized_input(x: &Tensor, ty: FixedType) -> candle_core::Result<Tensor> {
    fake_quantize(&x.to_dtype(DType::F64)?, ty)
}

/// The quantised layer at `path` as a [`Dense`].
///
/// # Errors
/// [`crate::ModelError::Quant`] for a layer that is not quantised; tensor errors.
pub(crate) fn dense(path: &str, layer: &Linear, relu: bool) -> Result<Dense> {
    let (Some(precision), Some((weight, bias))) = (
        layer.precision().copied(),
        layer.quantized_parameters().context(path)?,
    ) else {
        return Err(noether_quant::QuantError::Layer {
            layer: path.to_owned(),
            detail: "not quantised".into(),
        }
        .into());
    };
    let (inputs, outputs) = layer.dims();
    let bias = match bias {
        Some(b) => b.to_vec1::<f64>().context(path)?,
        None => vec![0.0; outputs],
    };
    Ok(Dense {
        name: path.to_owned(),
        inputs,
        outputs,
        weight: weight
            .flatten_all()
            .and_then(|w| w.to_vec1::<f64>())
            .context(path)?,
        bias,
        precision,
        relu,
    })
}

/// `t`'s values in f32, flat.
fn flat(t: &Tensor) -> Result<Vec<f32>> {
    t.to_dtype(DType::F32)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1::<f32>())
        .context("engine input")
}

/// A set of jets as the integer engine reads them: the f32 values the float model sees,
/// per jet `[nodes, width]` particle features and a `[nodes]` mask (Deep Sets; PELICAN,
/// whose rows are a node's products with every node followed by its two labels;
/// L-GATr-slim, whose rows are a token's four-vector followed by its scalars), or
/// `[width]` jet features and no mask.
#[derive(Debug, Clone)]
pub struct FixedPointInput {
    features: Vec<f32>,
    mask: Vec<f32>,
    jets: usize,
    nodes: usize,
    width: usize,
}

impl FixedPointInput {
    /// The engine's view of a model input.
    ///
    /// # Errors
    /// [`crate::ModelError::Quant`] for the input of a model without a fixed-point form;
    /// tensor errors.
    pub fn new(input: &crate::TaggerInput) -> Result<Self> {
        use crate::TaggerInput as I;
        let (features, mask, dims) = match input {
            I::Pfn(x) | I::Efn(x) => (flat(&x.features)?, flat(&x.mask)?, x.features.dims()),
            I::Mlp(x) => (flat(&x.features)?, Vec::new(), x.features.dims()),
            I::LGatrSlim(x) => {
                // Per token: its four-vector, then its scalars.
                return Self::rows(&[&x.vectors, &x.scalars], &x.mask);
            }
            I::Pelican(x) => {
                // Per node: its products with every node, then its two labels.
                return Self::rows(&[&x.dots, &x.labels], &x.mask);
            }
            other => {
                return Err(noether_quant::QuantError::BadInput {
                    input: other.kind().name().into(),
                    detail: "the model has no fixed-point form".into(),
                }
                .into())
            }
        };
        let (jets, nodes, width) = match *dims {
            [jets, nodes, width] => (jets, nodes, width),
            [jets, width] => (jets, 0, width),
            _ => unreachable!("model inputs are rank 2 or 3"),
        };
        Ok(Self {
            features,
            mask,
            jets,
            nodes,
            width,
        })
    }

    /// Rows that concatenate `parts` `[jets, rows, *]` along their last axis, with `mask`.
    fn rows(parts: &[&Tensor], mask: &Tensor) -> Result<Self> {
        let parts = parts
            .iter()
            .map(|t| t.to_dtype(DType::F32))
            .collect::<candle_core::Result<Vec<_>>>()
            .context("engine input")?;
        let rows = Tensor::cat(&parts, 2).context("engine input")?;
        let (jets, nodes, width) = rows.dims3().context("engine input")?;
        Ok(Self {
            features: flat(&rows)?,
            mask: flat(mask)?,
            jets,
            nodes,
            width,
        })
    }

    /// Jets held.
    pub fn len(&self) -> usize {
        self.jets
    }

    /// Whether no jet is held.
    pub fn is_empty(&self) -> bool {
        self.jets == 0
    }

    /// Features and mask of jet `b`.
    pub fn jet(&self, b: usize) -> (&[f32], &[f32]) {
        let rows = self.nodes.max(1);
        let features = &self.features[b * rows * self.width..(b + 1) * rows * self.width];
        let mask = if self.nodes == 0 {
            &[][..]
        } else {
            &self.mask[b * self.nodes..(b + 1) * self.nodes]
        };
        (features, mask)
    }
}
