//! LorentzNet (Gong et al., arXiv:2201.08187): Lorentz group equivariant blocks with
//! Minkowski dot-product attention, on dense masked `[batch, nodes, nodes, hidden]`
//! edge tensors. Parameter names mirror the PyTorch module (`embedding`, `LGEBs.{i}`,
//! `graph_dec`), so the official checkpoint loads directly (with its `module.` prefix).
//!
//! The first edge layer acts on concat(h_i, h_j, psi(|x_i - x_j|^2), psi(x_i . x_j)); it
//! is split as W1 h_i + W2 h_j + W3 a, so the node parts are computed once per node and
//! broadcast over pairs instead of once per edge.

use candle_core::{DType, Tensor, D};
use candle_nn::{Module, VarBuilder};

use crate::linear::{Linear, LinearLayers};
use serde::{Deserialize, Serialize};

use crate::batch_norm::MaskedBatchNorm;
use crate::dense::PairRows;
use crate::error::{Context, ModelError, Result};
use crate::fused::LorentzEdges;
use crate::minkowski::{dot4, psi};
use crate::mode::{dropout, Mode};
use crate::model::{
    bad, block_index, check_dropout, check_layers, check_width, elements, stack_macs, ModelInput,
    PaddedJets, TaggerModel,
};
use crate::placement::Placement;

/// LorentzNet hyper-parameters (defaults: the paper's top-tagging model).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LorentzNetConfig {
    /// Node scalars per particle (2: one-hot beam/particle times mass).
    pub n_scalar: usize,
    /// Hidden width.
    pub n_hidden: usize,
    /// Output classes.
    pub n_class: usize,
    /// Number of LGEB blocks.
    pub n_layers: usize,
    /// Coordinate-update weight c.
    pub c_weight: f64,
    /// Dropout before the last decoder layer (training only).
    pub dropout: f64,
    /// Component-wise clamp of the coordinate-update terms (the reference code's +-100,
    /// inherited from EGNN). It is active for TeV jets and breaks Lorentz equivariance;
    /// `f64::INFINITY` disables it.
    pub coord_clamp: f64,
}

impl Default for LorentzNetConfig {
    fn default() -> Self {
        Self {
            n_scalar: 2,
            n_hidden: 72,
            n_class: 2,
            n_layers: 6,
            c_weight: 0.005,
            dropout: 0.2,
            coord_clamp: 100.0,
        }
    }
}

/// LorentzNet's beams (sqrt(2), 0, 0, +-1) GeV, as its reference code builds them.
pub const LORENTZNET_BEAMS: &[[f32; 4]] = &[
    [std::f32::consts::SQRT_2, 0.0, 0.0, 1.0],
    [std::f32::consts::SQRT_2, 0.0, 0.0, -1.0],
];

/// A batch of graphs: `momenta` `[batch, nodes, 4]` (beams first, zero-padded),
/// `mask` `[batch, nodes]` (1 for beams and particles).
#[derive(Debug, Clone)]
pub struct LorentzNetInput {
    /// Four-momenta (E, px, py, pz), f32.
    pub momenta: Tensor,
    /// Node mask, f32.
    pub mask: Tensor,
    /// Number of leading beam nodes in every graph.
    pub beams: usize,
    /// Node masses `[batch, nodes]` computed by the caller (e.g. in f64 before the cast);
    /// `None`: sqrt|p^2| from the f32 momenta, as the reference code does.
    pub masses: Option<Tensor>,
}

impl LorentzNetInput {
    /// Wraps flat padded batch data (as `noether_data::Batch` holds it).
    ///
    /// # Errors
    /// [`ModelError::BadInput`] when the lengths do not match `[batch, nodes, 4]` and
    /// `[batch, nodes]`; [`ModelError::NonFinite`] for NaN or infinite momenta.
    pub fn from_flat(
        momenta: &[f32],
        mask: &[f32],
        batch: usize,
        nodes: usize,
        beams: usize,
    ) -> Result<Self> {
        crate::model::cpu_input(momenta, mask, batch, nodes, beams)
    }

    /// One jet alone (batch of one, no padding) with LorentzNet's beams
    /// (sqrt(2), 0, 0, +-1) prepended, as the reference code evaluates it.
    ///
    /// # Errors
    /// [`ModelError::NonFinite`] for NaN or infinite momenta.
    pub fn single_jet(constituents: &[[f32; 4]]) -> Result<Self> {
        let (momenta, mask, nodes) = crate::single_jet_flat(LORENTZNET_BEAMS, constituents);
        Self::from_flat(&momenta, &mask, 1, nodes, LORENTZNET_BEAMS.len())
    }

    /// Uses node masses computed by the caller (`[batch, nodes]`, flat). Computing them in
    /// f64 from the original momenta keeps the node scalars Lorentz invariant: sqrt|p^2|
    /// of f32-rounded massless momenta is rounding noise that changes under boosts.
    ///
    /// # Errors
    /// [`ModelError::BadInput`] for a wrong length, [`ModelError::NonFinite`] for NaN.
    pub fn with_masses(mut self, masses: &[f32]) -> Result<Self> {
        let (batch, nodes) = self.mask.dims2().context("mask")?;
        if masses.len() != batch * nodes {
            return Err(ModelError::BadInput {
                input: "masses",
                expected: format!("[{batch}, {nodes}] = {} values", batch * nodes),
                found: vec![masses.len()],
            });
        }
        if masses.iter().any(|x| !x.is_finite()) {
            return Err(ModelError::NonFinite { input: "masses" });
        }
        self.masses =
            Some(Tensor::from_slice(masses, (batch, nodes), self.mask.device()).context("masses")?);
        Ok(self)
    }

    /// Node scalars psi(one_hot(particle, beam) * sqrt|p^2|), `[batch, nodes, 2]`.
    fn scalars(&self) -> candle_core::Result<Tensor> {
        let (batch, nodes, _) = self.momenta.dims3()?;
        let mass = match &self.masses {
            Some(m) => m.to_dtype(self.momenta.dtype())?,
            None => dot4(&self.momenta, &self.momenta)?.abs()?.sqrt()?,
        };
        let is_beam: Vec<f32> = (0..nodes)
            .map(|k| if k < self.beams { 1.0 } else { 0.0 })
            .collect();
        let beam = Tensor::from_vec(is_beam, (1, nodes), self.momenta.device())?
            .to_dtype(self.momenta.dtype())?
            .broadcast_as((batch, nodes))?;
        let particle = (beam.ones_like()? - &beam)?;
        let one_hot = Tensor::stack(&[(particle * &mass)?, (beam * &mass)?], D::Minus1)?;
        psi(&one_hot)?.broadcast_mul(&self.mask.unsqueeze(D::Minus1)?)
    }
}

/// One Lorentz group equivariant block.
#[derive(Debug, Clone)]
pub struct LorentzBlock {
    edge_in: Linear,
    edge_bn: MaskedBatchNorm,
    edge_out: Linear,
    attention: Linear,
    node_in: Linear,
    node_bn: MaskedBatchNorm,
    node_out: Linear,
    coord: Option<(Linear, Linear)>,
    hidden: usize,
    c_weight: f64,
    clamp: f64,
}

impl LorentzBlock {
    /// Builds the block under `vb` (PyTorch names `phi_e.{0,1,3}`, `phi_m.0`,
    /// `phi_h.{0,1,3}`, `phi_x.{0,2}`; no `phi_x` in the last block).
    ///
    /// # Errors
    /// Missing or mis-shaped tensors.
    pub fn new(
        config: &LorentzNetConfig,
        last: bool,
        vb: &VarBuilder,
    ) -> candle_core::Result<Self> {
        let h = config.n_hidden;
        let coord = if last {
            None
        } else {
            Some((
                Linear::new(h, h, vb.pp("phi_x.0"))?,
                Linear::no_bias(h, 1, vb.pp("phi_x.2"))?,
            ))
        };
        Ok(Self {
            edge_in: Linear::no_bias(2 * h + 2, h, vb.pp("phi_e.0"))?,
            edge_bn: MaskedBatchNorm::new(h, &vb.pp("phi_e.1"))?,
            edge_out: Linear::new(h, h, vb.pp("phi_e.3"))?,
            attention: Linear::new(h, 1, vb.pp("phi_m.0"))?,
            node_in: Linear::new(2 * h + config.n_scalar, h, vb.pp("phi_h.0"))?,
            node_bn: MaskedBatchNorm::new(h, &vb.pp("phi_h.1"))?,
            node_out: Linear::new(h, h, vb.pp("phi_h.3"))?,
            coord,
            hidden: h,
            c_weight: config.c_weight,
            clamp: config.coord_clamp,
        })
    }

    /// Updates node features `h` `[B N, H]` and coordinates `x` `[B N, 4]` (nodes of all
    /// graphs stacked); `graph` holds the masks and pair layout, `scalars` is `[B N, S]`.
    ///
    /// # Errors
    /// Shape mismatches.
    pub fn forward(
        &self,
        h: &Tensor,
        x: &Tensor,
        scalars: &Tensor,
        graph: &Graph,
        train: bool,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let (agg, coord_sum) = if fused_on(h) {
            self.fused_edges(h, x, graph, train)?
        } else {
            self.composed_edges(h, x, graph, train)?
        };
        let x_new = match coord_sum {
            Some(sum) => (x + (sum.broadcast_div(&graph.neighbours)? * self.c_weight)?)?,
            None => x.clone(),
        };
        let input = Tensor::cat(&[h, &agg, scalars], D::Minus1)?;
        let out = self
            .node_bn
            .forward(&self.node_in.forward_rows(&input)?, &graph.node_mask, train)?
            .relu()?;
        let h_new = (h + self.node_out.forward_rows(&out)?)?;
        Ok((h_new, x_new))
    }

    /// The first edge layer's weight split by its input, `(W1, W2, W3)` with
    /// `W [h_i; h_j; a] = W1 h_i + W2 h_j + W3 a` (`a`: the two pair invariants), so that
    /// the node parts are computed once per node and broadcast over pairs.
    fn edge_in_parts(&self) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
        let hd = self.hidden;
        let w = self.edge_in.effective_weight()?;
        Ok((
            w.narrow(1, 0, hd)?,
            w.narrow(1, hd, hd)?,
            w.narrow(1, 2 * hd, 2)?,
        ))
    }

    /// The edge stage, from the node features and coordinates to `sum_j m_ij` and
    /// (coordinate blocks) `sum_j t_ij`, in one fused kernel ([`LorentzEdges`]).
    fn fused_edges(
        &self,
        h: &Tensor,
        x: &Tensor,
        graph: &Graph,
        train: bool,
    ) -> candle_core::Result<(Tensor, Option<Tensor>)> {
        let hd = self.hidden;
        let (bn_weight, bn_bias, eps) = self.edge_bn.affine();
        let op = LorentzEdges {
            nodes: graph.nodes,
            hidden: hd,
            coord: self.coord.is_some(),
            clamp: self.clamp,
            train,
            eps,
        };
        // [W1 h, W2 h] in one product per node.
        let (w1, w2, w3) = self.edge_in_parts()?;
        let node_parts = h.matmul(&Tensor::cat(&[w1, w2], 0)?.t()?)?;
        let (running_mean, running_var) = self.edge_bn.running();
        let (out_w, att_w) = (
            self.edge_out.effective_weight()?,
            self.attention.effective_weight()?,
        );
        let (out_b, att_b) = (bias(&self.edge_out)?, bias(&self.attention)?);
        let mut parts = vec![
            &w3,
            bn_weight,
            bn_bias,
            &running_mean,
            &running_var,
            &out_w,
            out_b,
            &att_w,
            att_b,
        ];
        let coord_w = match &self.coord {
            Some((first, second)) => Some((
                first.effective_weight()?,
                bias(first)?,
                second.effective_weight()?,
            )),
            None => None,
        };
        if let Some((w1, b1, w2)) = &coord_w {
            parts.extend([w1, *b1, w2]);
        }
        let params = LorentzEdges::pack(&parts)?;
        let coords = Tensor::cat(&[x, &graph.node_mask.to_dtype(x.dtype())?], 1)?;
        let sums = op
            .apply(&node_parts, &coords, &params)
            .map_err(candle_core::Error::wrap)?;
        if let Some((mean, var, count)) = &sums.batch_stats {
            self.edge_bn.update_running(mean, var, count.max(1.0))?;
        }
        Ok((sums.messages, sums.coords))
    }

    /// The same edge stage as composed candle operations (any device and dtype).
    fn composed_edges(
        &self,
        h: &Tensor,
        x: &Tensor,
        graph: &Graph,
        train: bool,
    ) -> candle_core::Result<(Tensor, Option<Tensor>)> {
        let (rows, nodes) = (&graph.rows, h.dim(0)?);
        let x_i = rows.gather_first(x)?;
        let x_j = rows.gather_second(x)?;
        let x_diff = (&x_i - &x_j)?;
        let invariants = Tensor::stack(
            &[psi(&dot4(&x_diff, &x_diff)?)?, psi(&dot4(&x_i, &x_j)?)?],
            D::Minus1,
        )?;
        // Node parts once per node.
        let (w1, w2, w3) = self.edge_in_parts()?;
        let part_i = rows.gather_first(&h.matmul(&w1.t()?)?)?;
        let part_j = rows.gather_second(&h.matmul(&w2.t()?)?)?;
        let pre = ((invariants.matmul(&w3.t()?)? + part_i)? + part_j)?;
        let z = self.edge_bn.forward(&pre, &graph.edge_mask, train)?;
        let m = self.edge_out.forward_rows(&z.relu()?)?.relu()?;
        let weight = candle_nn::ops::sigmoid(&self.attention.forward_rows(&m)?)?;
        let m = m.broadcast_mul(&(weight * &graph.edge_mask)?)?;
        let coord_sum = match &self.coord {
            Some((first, second)) => {
                let phi = second.forward_rows(&first.forward_rows(&m)?.relu()?)?;
                let trans = x_diff
                    .broadcast_mul(&phi)?
                    .clamp(-self.clamp, self.clamp)?
                    .broadcast_mul(&graph.edge_mask)?;
                Some(rows.sum_over_second(&trans, nodes)?)
            }
            None => None,
        };
        Ok((rows.sum_over_second(&m, nodes)?, coord_sum))
    }
}

/// Whether the fused kernels take the block: CPU tensors in f32 or f64.
fn fused_on(h: &Tensor) -> bool {
    h.device().is_cpu() && matches!(h.dtype(), DType::F32 | DType::F64)
}

/// A layer's bias (LorentzNet's fused layers all have one).
fn bias(layer: &Linear) -> candle_core::Result<&Tensor> {
    layer
        .bias()
        .ok_or_else(|| candle_core::Error::Msg("fused edge stage: a layer without bias".into()))
}

/// The masks and pair layout of a padded batch of graphs, shared by all blocks.
#[derive(Debug, Clone)]
pub struct Graph {
    /// Pair-row indices for `[B N N, C]` edge tensors.
    pub rows: PairRows,
    /// 1 for edges between distinct real nodes, `[B N N, 1]`.
    pub edge_mask: Tensor,
    /// 1 for real nodes, `[B N, 1]`.
    pub node_mask: Tensor,
    /// Real neighbours of every node (at least 1), `[B N, 1]`.
    pub neighbours: Tensor,
    /// Nodes per graph, N.
    pub nodes: usize,
}

impl Graph {
    /// Builds the layout from a node mask `[B, N]`.
    ///
    /// # Errors
    /// Only from the tensor backend.
    pub fn new(mask: &Tensor) -> candle_core::Result<Self> {
        let (batch, nodes) = mask.dims2()?;
        let eye = Tensor::eye(nodes, mask.dtype(), mask.device())?;
        let pair = mask.unsqueeze(2)?.broadcast_mul(&mask.unsqueeze(1)?)?;
        let edges = pair.broadcast_sub(&eye)?.relu()?;
        Ok(Self {
            rows: PairRows::new(batch, nodes, mask.device())?,
            neighbours: edges.sum(2)?.maximum(1.0)?.reshape((batch * nodes, 1))?,
            edge_mask: edges.reshape((batch * nodes * nodes, 1))?,
            node_mask: mask.reshape((batch * nodes, 1))?,
            nodes,
        })
    }
}

/// The LorentzNet classifier.
#[derive(Debug, Clone)]
pub struct LorentzNet {
    embedding: Linear,
    blocks: Vec<LorentzBlock>,
    decoder_in: Linear,
    decoder_out: Linear,
    config: LorentzNetConfig,
}

impl LorentzNet {
    /// Builds the model under `vb` (for the official checkpoint: `vb.pp("module")`).
    ///
    /// # Errors
    /// [`ModelError::Candle`] naming the missing or mis-shaped tensor.
    pub fn new(config: &LorentzNetConfig, vb: &VarBuilder) -> Result<Self> {
        let h = config.n_hidden;
        let blocks = (0..config.n_layers)
            .map(|i| {
                LorentzBlock::new(
                    config,
                    i + 1 == config.n_layers,
                    &vb.pp(format!("LGEBs.{i}")),
                )
                .context(&format!("building LGEBs.{i}"))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            embedding: Linear::new(config.n_scalar, h, vb.pp("embedding"))
                .context("building embedding")?,
            blocks,
            decoder_in: Linear::new(h, h, vb.pp("graph_dec.0")).context("building graph_dec.0")?,
            decoder_out: Linear::new(h, config.n_class, vb.pp("graph_dec.3"))
                .context("building graph_dec.3")?,
            config: config.clone(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &LorentzNetConfig {
        &self.config
    }

    /// Logits `[batch, n_class]` in evaluation mode.
    ///
    /// # Errors
    /// Shape mismatches between momenta and mask.
    pub fn forward(&self, input: &LorentzNetInput) -> Result<Tensor> {
        self.forward_t(input, &mut Mode::Eval)
    }

    /// Logits in training mode (masked batch statistics in BatchNorm, seeded dropout in
    /// the decoder) or evaluation mode.
    ///
    /// # Errors
    /// [`ModelError::BadInput`] when momenta, mask and masses disagree.
    pub fn forward_t(&self, input: &LorentzNetInput, mode: &mut Mode) -> Result<Tensor> {
        let (b, n) = input.mask.dims2().context("mask")?;
        if input.momenta.dims() != [b, n, 4] {
            return Err(ModelError::BadInput {
                input: "momenta",
                expected: format!("[{b}, {n}, 4] (from the mask)"),
                found: input.momenta.dims().to_vec(),
            });
        }
        crate::fused::model_pass(input.momenta.device(), || self.run(input, mode))
            .context("LorentzNet forward")
    }

    fn run(&self, input: &LorentzNetInput, mode: &mut Mode) -> candle_core::Result<Tensor> {
        let train = mode.is_train();
        let dtype = input.momenta.dtype();
        let mask = input.mask.to_dtype(dtype)?;
        let (batch, nodes) = mask.dims2()?;
        let graph = Graph::new(&mask)?;
        let scalars = input.scalars()?.reshape((batch * nodes, ()))?;
        let mut h = self.embedding.forward_rows(&scalars)?;
        let mut x = input.momenta.reshape((batch * nodes, 4))?;
        for block in &self.blocks {
            (h, x) = block.forward(&h, &x, &scalars, &graph, train)?;
        }
        let m = mask.unsqueeze(D::Minus1)?;
        let pooled = h
            .reshape((batch, nodes, ()))?
            .broadcast_mul(&m)?
            .sum(1)?
            .broadcast_div(&m.sum(1)?)?;
        let hidden = self.decoder_in.forward(&pooled)?.relu()?;
        let hidden = dropout(&hidden, self.config.dropout, mode)?;
        self.decoder_out.forward(&hidden)
    }
}

impl LinearLayers for LorentzBlock {
    /// Paths relative to the block (`phi_e.0`, ...), in the PyTorch names.
    fn linear_layers_mut(&mut self) -> Vec<(String, &mut Linear)> {
        let mut layers = vec![
            ("phi_e.0".to_owned(), &mut self.edge_in),
            ("phi_e.3".to_owned(), &mut self.edge_out),
            ("phi_m.0".to_owned(), &mut self.attention),
            ("phi_h.0".to_owned(), &mut self.node_in),
            ("phi_h.3".to_owned(), &mut self.node_out),
        ];
        if let Some((first, second)) = &mut self.coord {
            layers.push(("phi_x.0".to_owned(), first));
            layers.push(("phi_x.2".to_owned(), second));
        }
        layers
    }
}

impl LinearLayers for LorentzNet {
    fn linear_layers_mut(&mut self) -> Vec<(String, &mut Linear)> {
        let mut layers = vec![("embedding".to_owned(), &mut self.embedding)];
        for (i, block) in self.blocks.iter_mut().enumerate() {
            for (path, layer) in block.linear_layers_mut() {
                layers.push((format!("LGEBs.{i}.{path}"), layer));
            }
        }
        layers.push(("graph_dec.0".to_owned(), &mut self.decoder_in));
        layers.push(("graph_dec.3".to_owned(), &mut self.decoder_out));
        layers
    }
}

impl ModelInput for LorentzNetInput {
    /// Momenta and mask in the model's dtype; node masses are left to the model
    /// (sqrt|p^2| of the cast momenta, as the reference code computes them).
    fn compute(jets: &PaddedJets, place: &Placement) -> Result<Self> {
        let (b, n) = (jets.jets, jets.nodes);
        let on = |t: candle_core::Result<Tensor>| t.and_then(|t| t.to_dtype(place.dtype));
        Ok(Self {
            momenta: on(Tensor::from_slice(jets.momenta, (b, n, 4), &place.device))
                .context("momenta")?,
            mask: on(Tensor::from_slice(jets.mask, (b, n), &place.device)).context("mask")?,
            beams: jets.beams,
            masses: None,
        })
    }

    fn select(&self, rows: &Tensor) -> Result<Self> {
        Ok(Self {
            momenta: self.momenta.index_select(rows, 0).context("momenta rows")?,
            mask: self.mask.index_select(rows, 0).context("mask rows")?,
            beams: self.beams,
            masses: self
                .masses
                .as_ref()
                .map(|m| m.index_select(rows, 0))
                .transpose()
                .context("masses rows")?,
        })
    }

    fn cat(parts: &[Self]) -> Result<Self> {
        let field = |f: fn(&Self) -> &Tensor| parts.iter().map(f).cloned().collect::<Vec<_>>();
        let masses: Option<Vec<Tensor>> = parts.iter().map(|p| p.masses.clone()).collect();
        Ok(Self {
            momenta: Tensor::cat(&field(|p| &p.momenta), 0).context("momenta")?,
            mask: Tensor::cat(&field(|p| &p.mask), 0).context("mask")?,
            beams: parts.first().map_or(0, |p| p.beams),
            masses: masses
                .map(|m| Tensor::cat(&m, 0))
                .transpose()
                .context("masses")?,
        })
    }

    fn len(&self) -> usize {
        self.mask.dims().first().copied().unwrap_or(0)
    }
}

impl TaggerModel for LorentzNet {
    type Config = LorentzNetConfig;
    type Input = LorentzNetInput;
    const BEAMS: &'static [[f32; 4]] = LORENTZNET_BEAMS;

    fn check_config(c: &LorentzNetConfig) -> Result<()> {
        check_width("n_scalar", c.n_scalar)?;
        check_width("n_hidden", c.n_hidden)?;
        check_width("n_class", c.n_class)?;
        check_layers("n_layers", c.n_layers)?;
        if !(c.c_weight.is_finite() && c.c_weight >= 0.0) {
            return Err(bad(
                "c_weight",
                &c.c_weight,
                "must be finite and >= 0".into(),
            ));
        }
        // inf turns the clamp off; NaN would clamp every coordinate to NaN.
        if c.coord_clamp.is_nan() || c.coord_clamp <= 0.0 {
            return Err(bad(
                "coord_clamp",
                &c.coord_clamp,
                "must be positive (inf: no clamp)".into(),
            ));
        }
        check_dropout("dropout", c.dropout)
    }

    fn new(config: &LorentzNetConfig, vb: &VarBuilder) -> Result<Self> {
        Self::new(config, vb)
    }

    fn config(&self) -> &LorentzNetConfig {
        &self.config
    }

    fn forward_t(&self, input: &LorentzNetInput, mode: &mut Mode) -> Result<Tensor> {
        Self::forward_t(self, input, mode)
    }

    fn head(_: &LorentzNetConfig) -> &'static str {
        r"^graph_dec\.3\."
    }

    fn depth(c: &LorentzNetConfig, name: &str) -> Option<(usize, usize)> {
        let top = c.n_layers + 1;
        if name.starts_with("embedding.") {
            Some((0, top))
        } else if let Some(i) = block_index(name, "LGEBs.") {
            (i < c.n_layers).then_some((i + 1, top))
        } else {
            name.starts_with("graph_dec.").then_some((top, top))
        }
    }

    fn classes(c: &LorentzNetConfig) -> usize {
        c.n_class
    }

    /// The edge MLP's input: `[h_i, h_j, psi(x_i - x_j)^2, psi(x_i . x_j)]` per pair.
    fn activation_elements(c: &LorentzNetConfig, jets: usize, nodes: usize) -> u128 {
        elements(jets, nodes, 2, 2 * c.n_hidden + 2)
    }

    /// The authors' code runs the edge MLP on the n (n - 1) ordered pairs of distinct
    /// nodes (its first layer on the full concatenation, not factorised), and the last
    /// block has no coordinate update.
    fn forward_flops(c: &LorentzNetConfig, nodes: usize) -> u128 {
        let (n, h, s) = (nodes as u128, c.n_hidden, c.n_scalar);
        let pairs = n * n.saturating_sub(1);
        let edge = stack_macs(2 * h + 2, &[h, h]) + stack_macs(h, &[1]);
        let coord = stack_macs(h, &[h, 1]);
        let node = stack_macs(2 * h + s, &[h, h]);
        let blocks: u128 = (0..c.n_layers)
            .map(|i| {
                let last = i + 1 == c.n_layers;
                pairs * (edge + if last { 0 } else { coord }) + n * node
            })
            .sum();
        2 * (n * stack_macs(s, &[h]) + blocks + stack_macs(h, &[h, c.n_class]))
    }
}
