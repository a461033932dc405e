//! ParticleNet (Qu and Gouskos, arXiv:1902.08570) exactly as weaver-core defines it
//! (`weaver/nn/model/ParticleNet.py`, the model of the JetClass checkpoints), with
//! weaver's parameter names and shapes, so that its state dicts load without remaps.
//!
//! Feature BatchNorm; EdgeConv blocks: the k nearest neighbours of each particle (in
//! (deta, dphi) for the first block, in feature space after, excluding itself), the
//! edge features `[x_i, x_j - x_i]` through 1x1 convolutions + BatchNorm + ReLU, the mean
//! over neighbours, a shortcut (1x1 convolution + BatchNorm when widths differ), ReLU;
//! optional fusion of all blocks; mean pooling over the real particles; fully connected
//! layers with dropout and the head.
//!
//! Layout and exactness:
//! - Tensors are channels last (`[jets, points, channels]`), weaver's are channels
//!   first; the weights keep PyTorch's shapes (`[out, in, 1, 1]`).
//! - The first 1x1 convolution of a block acts on `[x_i, x_j - x_i]`; with W = [W1 W2]
//!   that is `(W1 - W2) x_i + W2 x_j`, computed per particle and gathered per edge
//!   instead of on the `[jets, points, k, 2 C]` edge tensor (exact up to rounding).
//! - Neighbours: the distance is weaver's `|x_i|^2 - 2 x_i . x_j + |x_j|^2` in f32 (the
//!   same rounding as PyTorch's, up to the order of the dot product's sum), self
//!   excluded, ties broken by the lower index. PyTorch's CPU `topk` leaves the order of
//!   equal distances to `std::nth_element`; points at equal distance are in practice
//!   only padded ones, which carry identical (zero) features, so the output does not
//!   depend on the rule.
//! - weaver shifts padded points 1e9 away so that they are chosen last; here they are
//!   never chosen unless a jet has at most k particles, when the missing neighbours are
//!   padded points (zero features), exactly as in weaver. Like weaver's sequence trimmer
//!   in evaluation, positions after the batch's longest jet are dropped first.
//! - Training: BatchNorm statistics come from the real particles (and their edges)
//!   only; weaver's also count padded positions. Evaluation uses the running statistics
//!   either way, so checkpoints behave identically.

use candle_core::{DType, Module, Tensor, D};
use candle_nn::{Init, VarBuilder};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::batch_norm::MaskedBatchNorm;
use crate::error::{Context, ModelError, Result};
use crate::fused::gemm::{matmul, MatRef};
use crate::fused::EdgeConvStage;
use crate::linear::{Linear, LinearLayers};
use crate::mode::{dropout, Mode};
use crate::model::{
    bad, block_index, check_dropout, check_layers, check_width, elements, stack_macs, ModelInput,
    PaddedJets, TaggerModel,
};
use crate::placement::Placement;
use crate::weaver::WeaverInputs;

/// ParticleNet's hyper-parameters, by weaver's names. Defaults: the JetClass model of
/// the Particle Transformer paper (`ParticleNet_kin.pt`): 7 inputs, 10 classes,
/// EdgeConv (16, (64, 64, 64)), (16, (128, 128, 128)), (16, (256, 256, 256)), one
/// fully connected layer of 256 with dropout 0.1, no fusion, feature BatchNorm, mean
/// pooling by real counts, and the inputs of `JetClass_kin.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[allow(clippy::struct_excessive_bools)] // weaver's switches, by weaver's names
pub struct ParticleNetConfig {
    /// Output classes.
    pub n_class: usize,
    /// EdgeConv blocks: (k neighbours, widths of its 1x1 convolutions).
    pub conv_params: Vec<(usize, Vec<usize>)>,
    /// Fully connected layers before the head: (width, dropout).
    pub fc_params: Vec<(usize, f64)>,
    /// Concatenate every block's output and mix it (`fusion_block`) before pooling.
    pub use_fusion: bool,
    /// BatchNorm on the input features.
    pub use_fts_bn: bool,
    /// Pool by the real particle count (weaver's default; `false` is refused: weaver's
    /// mean over all positions depends on a batch's padding).
    pub use_counts: bool,
    /// How the inputs are built (a weaver data config's `inputs`).
    pub inputs: WeaverInputs,
    /// BatchNorm normalises with its running statistics in training too and leaves them
    /// unchanged; its weights and biases still train (PyTorch's `eval()` on the BatchNorm
    /// modules, detectron2's `FrozenBatchNorm2d`). For fine-tuning a weaver checkpoint:
    /// its statistics include the padded positions (zeros), noether's training
    /// statistics only the real particles, so that batch statistics would feed the
    /// pretrained layers activations on another scale.
    pub frozen_batchnorm: bool,
}

impl Default for ParticleNetConfig {
    fn default() -> Self {
        Self {
            n_class: 10,
            conv_params: vec![
                (16, vec![64, 64, 64]),
                (16, vec![128, 128, 128]),
                (16, vec![256, 256, 256]),
            ],
            fc_params: vec![(256, 0.1)],
            use_fusion: false,
            use_fts_bn: true,
            use_counts: true,
            inputs: WeaverInputs::default(),
            frozen_batchnorm: false,
        }
    }
}

impl ParticleNetConfig {
    /// Width of the block outputs that the head pools.
    fn pooled_width(&self) -> usize {
        if self.use_fusion {
            fusion_width(self)
        } else {
            self.conv_params
                .last()
                .and_then(|(_, c)| c.last())
                .copied()
                .unwrap_or(1)
        }
    }

    /// The largest k.
    fn max_k(&self) -> usize {
        self.conv_params.iter().map(|(k, _)| *k).max().unwrap_or(1)
    }
}

/// weaver's fusion width: the blocks' summed widths rounded down to a multiple of 128,
/// within [128, 1024].
fn fusion_width(c: &ParticleNetConfig) -> usize {
    let total: usize = c.conv_params.iter().filter_map(|(_, w)| w.last()).sum();
    (total / 128 * 128).clamp(128, 1024)
}

/// ParticleNet's inputs, channels last.
#[derive(Debug, Clone)]
pub struct ParticleNetInput {
    /// `pf_points` `[jets, length, 2]`.
    pub points: Tensor,
    /// `pf_features` `[jets, length, features]`.
    pub features: Tensor,
    /// `pf_mask` `[jets, length]`.
    pub mask: Tensor,
}

impl ParticleNetInput {
    /// The inputs `spec` defines for `jets`, on `place`.
    ///
    /// # Errors
    /// Bad formulas; tensor errors.
    pub fn build(spec: &WeaverInputs, jets: &PaddedJets, place: &Placement) -> Result<Self> {
        let a = spec.build(jets)?;
        let on = |v: Vec<f32>, shape: &[usize], what: &str| {
            Tensor::from_vec(v, shape, &place.device)
                .and_then(|t| t.to_dtype(place.dtype))
                .context(what)
        };
        Ok(Self {
            points: on(a.points, &[a.jets, a.length, 2], "pf_points")?,
            features: on(
                a.features,
                &[a.jets, a.length, spec.feature_dims()],
                "pf_features",
            )?,
            mask: on(a.mask, &[a.jets, a.length], "pf_mask")?,
        })
    }
}

impl ModelInput for ParticleNetInput {
    /// The default inputs (`JetClass_kin.yaml`); a model builds its own with
    /// [`TaggerModel::input`].
    fn compute(jets: &PaddedJets, place: &Placement) -> Result<Self> {
        Self::build(&WeaverInputs::default(), jets, place)
    }

    fn select(&self, rows: &Tensor) -> Result<Self> {
        Ok(Self {
            points: self
                .points
                .index_select(rows, 0)
                .context("pf_points rows")?,
            features: self
                .features
                .index_select(rows, 0)
                .context("pf_features rows")?,
            mask: self.mask.index_select(rows, 0).context("pf_mask rows")?,
        })
    }

    fn cat(parts: &[Self]) -> Result<Self> {
        let field = |f: fn(&Self) -> &Tensor| parts.iter().map(f).cloned().collect::<Vec<_>>();
        Ok(Self {
            points: Tensor::cat(&field(|p| &p.points), 0).context("pf_points")?,
            features: Tensor::cat(&field(|p| &p.features), 0).context("pf_features")?,
            mask: Tensor::cat(&field(|p| &p.mask), 0).context("pf_mask")?,
        })
    }

    fn len(&self) -> usize {
        self.mask.dims().first().copied().unwrap_or(0)
    }
}

/// A 1x1 convolution without bias, weight `[out, in, 1, 1]` (`dims = 2`, Conv2d) or
/// `[out, in, 1]` (`dims = 1`, Conv1d) as PyTorch stores it, applied as a linear map.
fn conv1x1(input: usize, out: usize, dims: usize, vb: &VarBuilder) -> candle_core::Result<Linear> {
    let shape: Vec<usize> = [out, input]
        .into_iter()
        .chain(std::iter::repeat_n(1, dims))
        .collect();
    // PyTorch's default: kaiming_uniform(a = sqrt 5), U(+-1/sqrt(fan_in)).
    let init = Init::Kaiming {
        dist: candle_nn::init::NormalOrUniform::Uniform,
        fan: candle_nn::init::FanInOut::FanIn,
        non_linearity: candle_nn::init::NonLinearity::ExplicitGain((1.0f64 / 3.0).sqrt()),
    };
    let weight = vb
        .get_with_hints(shape, "weight", init)?
        .reshape((out, input))?;
    Ok(Linear::from(candle_nn::Linear::new(weight, None)))
}

/// One EdgeConv block.
#[derive(Debug, Clone)]
struct EdgeConv {
    k: usize,
    convs: Vec<Linear>,
    bns: Vec<MaskedBatchNorm>,
    shortcut: Option<(Linear, MaskedBatchNorm)>,
}

impl EdgeConv {
    fn new(k: usize, input: usize, widths: &[usize], vb: &VarBuilder) -> candle_core::Result<Self> {
        let mut convs = Vec::new();
        let mut bns = Vec::new();
        let mut width = 2 * input;
        for (j, &w) in widths.iter().enumerate() {
            convs.push(conv1x1(width, w, 2, &vb.pp(format!("convs.{j}")))?);
            bns.push(MaskedBatchNorm::new(w, &vb.pp(format!("bns.{j}")))?);
            width = w;
        }
        let shortcut = if input == width {
            None
        } else {
            Some((
                conv1x1(input, width, 1, &vb.pp("sc"))?,
                MaskedBatchNorm::new(width, &vb.pp("sc_bn"))?,
            ))
        };
        Ok(Self {
            k,
            convs,
            bns,
            shortcut,
        })
    }

    /// `features` `[B, P, C]`, `neighbours` flat row indices `[B P k]` into `[B P, C]`
    /// ([`EdgeConvStage::PADDED`] for the rows of padded points), `mask` `[B, P]` ->
    /// `[B, P, C_out]` (padded rows are garbage; the caller masks). `fused`: the edge
    /// stage as one CPU kernel ([`EdgeConvStage`]), else composed from candle operations.
    fn forward(
        &self,
        features: &Tensor,
        neighbours: &[u32],
        mask: &Tensor,
        train: bool,
        fused: bool,
    ) -> candle_core::Result<Tensor> {
        let (b, p, c) = features.dims3()?;
        let rows = features.reshape((b * p, c))?;
        let pooled = if fused {
            self.edges_fused(&rows, neighbours, train)?
        } else {
            self.edges_composed(&rows, neighbours, mask, train)?
        };
        let width = pooled.dim(1)?;
        let shortcut = match &self.shortcut {
            Some((conv, bn)) => {
                bn.forward(&conv.forward_rows(&rows)?, &mask.reshape(b * p)?, train)?
            }
            None => rows,
        };
        (shortcut + pooled)?.relu()?.reshape((b, p, width))
    }

    /// The first convolution `[W1 W2]` on `[x_i, x_j - x_i]` split per point:
    /// `[(W1 - W2) x_i, W2 x_i]`, `[B P, 2 C_0]` (one product with the two stacked).
    fn first_layer_parts(&self, rows: &Tensor) -> candle_core::Result<Tensor> {
        let c = rows.dim(1)?;
        let w = self.convs[0].effective_weight()?;
        let (w1, w2) = (w.narrow(1, 0, c)?, w.narrow(1, c, c)?);
        rows.matmul(&Tensor::cat(&[(&w1 - &w2)?, w2], 0)?.t()?)
    }

    /// The edge stage through [`EdgeConvStage`]: `[B P, C_last]`, zero on padded points.
    fn edges_fused(
        &self,
        rows: &Tensor,
        neighbours: &[u32],
        train: bool,
    ) -> candle_core::Result<Tensor> {
        let points = rows.dim(0)?;
        let parts = self.first_layer_parts(rows)?;
        let mut params = Vec::new();
        let mut widths = Vec::new();
        let mut eps = 1e-5;
        for (j, bn) in self.bns.iter().enumerate() {
            if j > 0 {
                params.push(self.convs[j].effective_weight()?);
            }
            let (gamma, beta, e) = bn.affine();
            let (mean, var) = bn.running();
            widths.push(gamma.dim(0)?);
            params.extend([gamma.clone(), beta.clone(), mean, var]);
            eps = e;
        }
        let params = EdgeConvStage::pack(&params.iter().collect::<Vec<_>>())?;
        let index = Tensor::from_slice(neighbours, (points, self.k), rows.device())?;
        let out = EdgeConvStage::new(self.k, widths, eps, train)
            .apply(&parts, &index, &params)
            .map_err(candle_core::Error::wrap)?;
        if let Some(stats) = &out.batch_stats {
            for (bn, (mean, var)) in self.bns.iter().zip(stats) {
                bn.update_running(mean, var, (out.edges as f64).max(1.0))?;
            }
        }
        Ok(out.pooled)
    }

    /// The edge stage composed from candle operations (any device and dtype): `[B P,
    /// C_last]`, garbage on padded points.
    fn edges_composed(
        &self,
        rows: &Tensor,
        neighbours: &[u32],
        mask: &Tensor,
        train: bool,
    ) -> candle_core::Result<Tensor> {
        let (points, k) = (rows.dim(0)?, self.k);
        let parts = self.first_layer_parts(rows)?;
        let half = parts.dim(1)? / 2;
        let centre = parts.narrow(1, 0, half)?.contiguous()?;
        let other = parts.narrow(1, half, half)?.contiguous()?;
        // A padded point's edges read its own row (their outputs are masked later).
        let index: Vec<u32> = neighbours
            .iter()
            .enumerate()
            .map(|(e, &j)| {
                if j == EdgeConvStage::PADDED {
                    (e / k) as u32
                } else {
                    j
                }
            })
            .collect();
        let index = Tensor::from_vec(index, points * k, rows.device())?;
        // Every edge row (i, n) also reads row i: as gathers, whose backward is a
        // contiguous index_add (a broadcast over k would reduce over a non-trailing
        // dimension in backward, which candle does element by element).
        let own = own_rows(points, k, rows.device())?;
        let mut x = (other.index_select(&index, 0)? + centre.index_select(&own, 0)?)?;
        let edge_mask = mask
            .reshape((points, 1))?
            .broadcast_as((points, k))?
            .contiguous()?;
        for (j, bn) in self.bns.iter().enumerate() {
            if j > 0 {
                x = self.convs[j].forward_rows(&x)?;
            }
            x = bn.forward(&x, &edge_mask, train)?.relu()?;
        }
        let width = x.dim(1)?;
        // The mean over the k neighbours as a scatter-add of each row into its point.
        let zeros = Tensor::zeros((points, width), x.dtype(), x.device())?;
        zeros.index_add(&own, &x, 0)? * (1.0 / k as f64)
    }
}

/// `[0 x k, 1 x k, ...]`: the point of every edge row.
fn own_rows(points: usize, k: usize, device: &candle_core::Device) -> candle_core::Result<Tensor> {
    let rows: Vec<u32> = (0..points as u32)
        .flat_map(|i| std::iter::repeat_n(i, k))
        .collect();
    Tensor::from_vec(rows, points * k, device)
}

/// The k nearest real neighbours of every real point of `coords` `[B, P, D]` (flat row
/// indices into `[B P]`, `[B P k]`; [`EdgeConvStage::PADDED`] for padded points), by
/// weaver's distance `|x_i|^2 - 2 x_i . x_j + |x_j|^2` in f32 (the products as one Gram
/// matrix per jet, as weaver's `matmul`), self excluded, ties to the lower index; a jet with at most
/// k particles gets padded neighbours (a padded position of its own jet: `P` must exceed
/// every jet's count when that happens).
fn knn(coords: &Tensor, counts: &[usize], k: usize) -> candle_core::Result<Vec<u32>> {
    let (b, p, d) = coords.dims3()?;
    let values: Vec<f32> = coords.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    let per_jet: Vec<Vec<u32>> = (0..b)
        .into_par_iter()
        .map(|jet| {
            let x = &values[jet * p * d..(jet + 1) * p * d];
            let n = counts[jet];
            let norms: Vec<f32> = (0..n)
                .map(|i| x[i * d..(i + 1) * d].iter().map(|v| v * v).sum())
                .collect();
            let real = &x[..n * d];
            let mut gram = vec![0f32; n * n];
            if n > 0 && d > 0 {
                let (rows, columns) = (
                    MatRef::row_major(real, n, d),
                    MatRef::transposed(real, d, n),
                );
                matmul(&mut gram, rows, columns, false);
            }
            let base = (jet * p) as u32;
            let pad = base + n.min(p - 1) as u32;
            let mut out = Vec::with_capacity(p * k);
            let mut order: Vec<(f32, u32)> = Vec::with_capacity(n);
            for i in 0..p {
                if i >= n {
                    out.extend(std::iter::repeat_n(EdgeConvStage::PADDED, k));
                    continue;
                }
                order.clear();
                for j in (0..n).filter(|&j| j != i) {
                    let dist = ((norms[i] + -2.0 * gram[i * n + j]) + norms[j]).max(0.0);
                    order.push((dist, j as u32));
                }
                let take = k.min(order.len());
                let by = |a: &(f32, u32), b: &(f32, u32)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
                if take < order.len() {
                    order.select_nth_unstable_by(take, by);
                }
                order[..take].sort_unstable_by(by);
                out.extend(order[..take].iter().map(|(_, j)| base + j));
                out.extend(std::iter::repeat_n(pad, k - take));
            }
            out
        })
        .collect();
    Ok(per_jet.into_iter().flatten().collect())
}

/// ParticleNet.
#[derive(Debug, Clone)]
pub struct ParticleNet {
    bn_fts: Option<MaskedBatchNorm>,
    edge_convs: Vec<EdgeConv>,
    fusion: Option<(Linear, MaskedBatchNorm)>,
    fc: Vec<Linear>,
    head: Linear,
    config: ParticleNetConfig,
}

impl ParticleNet {
    /// Builds the model under `vb` with weaver's names (`bn_fts`, `edge_convs.{i}.convs.{j}`,
    /// `edge_convs.{i}.bns.{j}`, `edge_convs.{i}.sc`, `edge_convs.{i}.sc_bn`,
    /// `fusion_block.{0,1}`, `fc.{i}.0`, `fc.{n}`).
    ///
    /// # Errors
    /// Missing or mis-shaped tensors.
    pub fn new(config: &ParticleNetConfig, vb: &VarBuilder) -> Result<Self> {
        let inputs = config.inputs.feature_dims();
        let bn_fts = config
            .use_fts_bn
            .then(|| MaskedBatchNorm::new(inputs, &vb.pp("bn_fts")))
            .transpose()
            .context("building bn_fts")?;
        let mut width = inputs;
        let mut edge_convs = Vec::new();
        for (i, (k, widths)) in config.conv_params.iter().enumerate() {
            let block = EdgeConv::new(*k, width, widths, &vb.pp(format!("edge_convs.{i}")))
                .context(&format!("building edge_convs.{i}"))?;
            edge_convs.push(block);
            width = *widths.last().unwrap_or(&width);
        }
        let fusion = if config.use_fusion {
            let total: usize = config
                .conv_params
                .iter()
                .filter_map(|(_, w)| w.last())
                .sum();
            let out = fusion_width(config);
            let vbf = vb.pp("fusion_block");
            Some((
                conv1x1(total, out, 1, &vbf.pp("0")).context("building fusion_block.0")?,
                MaskedBatchNorm::new(out, &vbf.pp("1")).context("building fusion_block.1")?,
            ))
        } else {
            None
        };
        let mut fc = Vec::new();
        let mut width = config.pooled_width();
        for (i, (w, _)) in config.fc_params.iter().enumerate() {
            fc.push(
                Linear::new(width, *w, vb.pp(format!("fc.{i}.0")))
                    .context(&format!("building fc.{i}"))?,
            );
            width = *w;
        }
        let n = config.fc_params.len();
        let head = Linear::new(width, config.n_class, vb.pp(format!("fc.{n}")))
            .context("building the head")?;
        Ok(Self {
            bn_fts,
            edge_convs,
            fusion,
            fc,
            head,
            config: config.clone(),
        })
    }

    /// Logits `[B, n_class]`.
    ///
    /// # Errors
    /// [`ModelError::BadInput`] for inputs of the wrong shape.
    pub fn forward(&self, input: &ParticleNetInput, mode: &mut Mode) -> Result<Tensor> {
        self.check_input(input)?;
        let fused = input.features.device().is_cpu()
            && matches!(input.features.dtype(), DType::F32 | DType::F64);
        crate::fused::model_pass(input.features.device(), || self.run(input, mode, fused))
            .context("ParticleNet forward")
    }

    /// [`Self::forward`] with every EdgeConv edge stage composed from candle operations
    /// (what `forward` runs off the CPU): the reference the fused kernel
    /// ([`EdgeConvStage`]) is tested against.
    ///
    /// # Errors
    /// As [`Self::forward`].
    pub fn forward_composed(&self, input: &ParticleNetInput, mode: &mut Mode) -> Result<Tensor> {
        self.check_input(input)?;
        crate::fused::model_pass(input.features.device(), || self.run(input, mode, false))
            .context("ParticleNet forward")
    }

    /// The inputs' shapes against each other and the config.
    fn check_input(&self, input: &ParticleNetInput) -> Result<()> {
        let (b, p) = input.mask.dims2().context("pf_mask")?;
        let features = self.config.inputs.feature_dims();
        for (name, tensor, width) in [
            ("pf_points", &input.points, 2),
            ("pf_features", &input.features, features),
        ] {
            if tensor.dims() != [b, p, width] {
                return Err(ModelError::BadInput {
                    input: name,
                    expected: format!("[{b}, {p}, {width}] (as pf_mask)"),
                    found: tensor.dims().to_vec(),
                });
            }
        }
        if p <= self.config.max_k() {
            return Err(ModelError::BadInput {
                input: "pf_mask",
                expected: format!("more than k = {} positions per jet", self.config.max_k()),
                found: input.mask.dims().to_vec(),
            });
        }
        Ok(())
    }

    fn run(
        &self,
        input: &ParticleNetInput,
        mode: &mut Mode,
        fused: bool,
    ) -> candle_core::Result<Tensor> {
        // Whether BatchNorm uses batch statistics (dropout follows `mode` itself).
        let train = mode.is_train() && !self.config.frozen_batchnorm;
        let mask_values: Vec<f32> = input.mask.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        let (b, full) = input.mask.dims2()?;
        let counts: Vec<usize> = mask_values
            .chunks(full)
            .map(|m| m.iter().filter(|&&v| v > 0.0).count())
            .collect();
        // Real particles come first: drop the positions after the longest jet, keeping
        // at least one padded position for jets of at most k particles.
        let longest = counts.iter().copied().max().unwrap_or(0);
        let keep = (longest.max(self.config.max_k()) + 1).min(full);
        let narrow = |t: &Tensor| t.narrow(1, 0, keep);
        let mask = narrow(&input.mask)?.contiguous()?;
        let mask3 = mask.unsqueeze(D::Minus1)?;
        let mut fts = narrow(&input.features)?.contiguous()?;
        if let Some(bn) = &self.bn_fts {
            fts = bn.forward(&fts, &mask, train)?;
        }
        // Masked with or without BatchNorm (weaver masks only after it): padded
        // neighbours must carry zero features for the output not to depend on which.
        fts = fts.broadcast_mul(&mask3)?;
        let points = narrow(&input.points)?.contiguous()?;
        let mut outputs = Vec::new();
        for (i, block) in self.edge_convs.iter().enumerate() {
            let coords = if i == 0 { &points } else { &fts };
            let neighbours = knn(coords, &counts, block.k)?;
            fts = block
                .forward(&fts, &neighbours, &mask, train, fused)?
                .broadcast_mul(&mask3)?;
            if self.fusion.is_some() {
                outputs.push(fts.clone());
            }
        }
        if let Some((conv, bn)) = &self.fusion {
            let all = Tensor::cat(&outputs, D::Minus1)?;
            let width = all.dim(D::Minus1)?;
            let mixed = conv.forward_rows(&all.reshape((b * keep, width))?)?;
            let mixed = bn
                .forward(&mixed, &mask.reshape(b * keep)?, train)?
                .relu()?;
            fts = mixed.reshape((b, keep, ()))?.broadcast_mul(&mask3)?;
        }
        let count: Vec<f32> = counts.iter().map(|&c| c.max(1) as f32).collect();
        let count = Tensor::from_vec(count, (b, 1), fts.device())?.to_dtype(fts.dtype())?;
        let mut x = fts.sum(1)?.broadcast_div(&count)?;
        for (layer, (_, p)) in self.fc.iter().zip(&self.config.fc_params) {
            x = dropout(&layer.forward(&x)?.relu()?, *p, mode)?;
        }
        self.head.forward(&x)
    }
}

impl LinearLayers for ParticleNet {
    fn linear_layers_mut(&mut self) -> Vec<(String, &mut Linear)> {
        let mut layers = Vec::new();
        for (i, block) in self.edge_convs.iter_mut().enumerate() {
            for (j, conv) in block.convs.iter_mut().enumerate() {
                layers.push((format!("edge_convs.{i}.convs.{j}"), conv));
            }
            if let Some((sc, _)) = &mut block.shortcut {
                layers.push((format!("edge_convs.{i}.sc"), sc));
            }
        }
        if let Some((conv, _)) = &mut self.fusion {
            layers.push(("fusion_block.0".to_owned(), conv));
        }
        let n = self.fc.len();
        for (i, fc) in self.fc.iter_mut().enumerate() {
            layers.push((format!("fc.{i}.0"), fc));
        }
        layers.push((format!("fc.{n}"), &mut self.head));
        layers
    }
}

impl TaggerModel for ParticleNet {
    type Config = ParticleNetConfig;
    type Input = ParticleNetInput;
    const BEAMS: &'static [[f32; 4]] = &[];

    fn check_config(c: &ParticleNetConfig) -> Result<()> {
        check_width("n_class", c.n_class)?;
        if c.conv_params.is_empty() {
            return Err(bad(
                "conv_params",
                &"[]",
                "needs at least one EdgeConv block".into(),
            ));
        }
        check_layers("conv_params (blocks)", c.conv_params.len())?;
        for (i, (k, widths)) in c.conv_params.iter().enumerate() {
            check_width(&format!("conv_params[{i}].k"), *k)?;
            crate::model::check_widths(&format!("conv_params[{i}].channels"), widths)?;
        }
        check_layers("fc_params (layers)", c.fc_params.len())?;
        for (i, (w, p)) in c.fc_params.iter().enumerate() {
            check_width(&format!("fc_params[{i}].width"), *w)?;
            check_dropout(&format!("fc_params[{i}].dropout"), *p)?;
        }
        if !c.use_counts {
            return Err(bad(
                "use_counts",
                &false,
                "must be true: pooling over all positions depends on a batch's padding".into(),
            ));
        }
        let length = c.inputs.length();
        if length <= c.max_k() {
            return Err(bad(
                "inputs.points.length",
                &length,
                format!("must exceed the largest k ({}) of conv_params", c.max_k()),
            ));
        }
        Ok(())
    }

    fn new(config: &ParticleNetConfig, vb: &VarBuilder) -> Result<Self> {
        Self::new(config, vb)
    }

    fn config(&self) -> &ParticleNetConfig {
        &self.config
    }

    fn input(&self, jets: &PaddedJets, place: &Placement) -> Result<ParticleNetInput> {
        ParticleNetInput::build(&self.config.inputs, jets, place)
    }

    fn forward_t(&self, input: &ParticleNetInput, mode: &mut Mode) -> Result<Tensor> {
        self.forward(input, mode)
    }

    /// The last linear layer, `fc.{n}` (the hidden ones are `fc.{i}.0`).
    fn head(_: &ParticleNetConfig) -> &'static str {
        r"^fc\.\d+\.(weight|bias)$"
    }

    fn depth(c: &ParticleNetConfig, name: &str) -> Option<(usize, usize)> {
        let blocks = c.conv_params.len();
        let top = blocks + 1;
        if name.starts_with("bn_fts.") {
            Some((0, top))
        } else if let Some(i) = block_index(name, "edge_convs.") {
            (i < blocks).then_some((i + 1, top))
        } else if name.starts_with("fusion_block.") || name.starts_with("fc.") {
            Some((top, top))
        } else {
            None
        }
    }

    fn classes(c: &ParticleNetConfig) -> usize {
        c.n_class
    }

    /// The edge tensors `[jets, points, k, width]` of the widest block, times what a
    /// training forward keeps of them for backward: about eight per 1x1 convolution (its
    /// output, BatchNorm's intermediates, the ReLU). A 512-jet batch of the paper-size
    /// model at 128 positions is ~26 GB, more than a 24 GB machine has; the OOM killer
    /// would otherwise end the run.
    fn activation_elements(c: &ParticleNetConfig, jets: usize, nodes: usize) -> u128 {
        let points = nodes.min(c.inputs.length());
        c.conv_params
            .iter()
            .map(|(k, w)| {
                let widest = w.iter().max().copied().unwrap_or(1);
                elements(jets, points, 1, k * widest) * 8 * w.len() as u128
            })
            .max()
            .unwrap_or(0)
    }

    /// As weaver-core computes it on `min(nodes, length)` points: per block the kNN
    /// distances' product (`-2 x^T x`, on the 2 coordinates for the first block and on
    /// the block's input features after), the 1x1 convolutions on all `points x k` edges
    /// (the first on `[x_i, x_j - x_i]`, not factorised), the shortcut convolution where
    /// widths differ; the fusion convolution; the fully connected layers and head.
    fn forward_flops(c: &ParticleNetConfig, nodes: usize) -> u128 {
        let p = nodes.min(c.inputs.length()) as u128;
        let mut input = c.inputs.feature_dims();
        let mut macs = 0;
        for (block, (k, widths)) in c.conv_params.iter().enumerate() {
            let knn_dims = if block == 0 { 2 } else { input };
            let out = widths.last().copied().unwrap_or(input);
            macs += p * p * knn_dims as u128 + p * (*k as u128) * stack_macs(2 * input, widths);
            if input != out {
                macs += p * stack_macs(input, &[out]);
            }
            input = out;
        }
        if c.use_fusion {
            let total: usize = c.conv_params.iter().filter_map(|(_, w)| w.last()).sum();
            macs += p * stack_macs(total, &[fusion_width(c)]);
        }
        let fc: Vec<usize> = c.fc_params.iter().map(|(w, _)| *w).collect();
        let last = fc.last().copied().unwrap_or_else(|| c.pooled_width());
        macs += stack_macs(c.pooled_width(), &fc) + stack_macs(last, &[c.n_class]);
        2 * macs
    }
}
