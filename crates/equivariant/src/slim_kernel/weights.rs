//! The network's weights as the kernels see them: one structure ([`NetW`]) generic over
//! the handle of a weight (a tensor while collecting, a range of the packed parameters in
//! the training op, a slice while computing, a mutable slice for the gradients), filled by
//! one walk over the model's layers in one fixed order.

use std::ops::Range;

use candle_core::Tensor;

use crate::linear::Linear;
use crate::slim_layers::{Nonlinearity, SlimBlock, SlimLinear};

/// A [`SlimLinear`]'s weights: `weight_v` `[out_v, in_v]`, the scalar layer's weight
/// `[out_s, in_s]` and bias; dims as (in, out).
pub(super) struct LinearW<W> {
    pub(super) v: W,
    pub(super) v_dims: (usize, usize),
    pub(super) s: W,
    pub(super) bias: Option<W>,
    pub(super) s_dims: (usize, usize),
}

/// A gated unit of the MLP: its linear layer and (scalar, vector) nonlinearities.
pub(super) struct GluW<W> {
    pub(super) linear: LinearW<W>,
    pub(super) act_s: Nonlinearity,
    pub(super) act_v: Nonlinearity,
}

/// A [`SlimBlock`]'s weights and attention shape.
pub(super) struct BlockW<W> {
    pub(super) norm1: Option<(W, W)>,
    pub(super) attn_in: LinearW<W>,
    pub(super) attn_out: LinearW<W>,
    pub(super) heads: usize,
    pub(super) hv: usize,
    pub(super) hs: usize,
    pub(super) norm2: Option<(W, W)>,
    pub(super) glus: Vec<GluW<W>>,
    pub(super) last: LinearW<W>,
}

/// The network: input layer, blocks, output layer.
pub(super) struct NetW<W> {
    pub(super) linear_in: LinearW<W>,
    pub(super) blocks: Vec<BlockW<W>>,
    pub(super) linear_out: LinearW<W>,
}

/// The network's layers, as `LGatrSlimNet` holds them.
#[derive(Clone, Copy)]
pub(crate) struct SlimLayers<'a> {
    /// `linear_in`.
    pub(crate) linear_in: &'a SlimLinear,
    /// `blocks`.
    pub(crate) blocks: &'a [SlimBlock],
    /// `linear_out`.
    pub(crate) linear_out: &'a SlimLinear,
}

/// A float layer's weight and bias; `None` for a fixed-point layer or one with an unmerged
/// adapter (its forward is not the plain product).
fn plain(layer: &Linear) -> Option<(&Tensor, Option<&Tensor>)> {
    let float = layer.precision().is_none() && (layer.adapter().is_none() || layer.is_merged());
    float.then(|| (layer.weight(), layer.bias()))
}

fn linear_w<'t, W>(
    linear: &'t SlimLinear,
    take: &mut impl FnMut(&'t Tensor) -> W,
) -> Option<LinearW<W>> {
    let (v, _) = plain(&linear.linear_v)?;
    let scalar = linear.linear_s.as_ref()?;
    let (s, bias) = plain(scalar)?;
    Some(LinearW {
        v: take(v),
        v_dims: linear.linear_v.dims(),
        s: take(s),
        bias: bias.map(take),
        s_dims: scalar.dims(),
    })
}

fn gains_w<'t, W>(
    gains: Option<&'t (Tensor, Tensor)>,
    take: &mut impl FnMut(&'t Tensor) -> W,
) -> Option<(W, W)> {
    gains.map(|(v, s)| (take(v), take(s)))
}

fn block_w<'t, W>(
    block: &'t SlimBlock,
    take: &mut impl FnMut(&'t Tensor) -> W,
) -> Option<BlockW<W>> {
    let attention = &block.attention;
    let float = block.residual.is_none()
        && block.norm1.quant.is_none()
        && block.norm2.quant.is_none()
        && attention.quant.is_none()
        && block.mlp.glus.iter().all(|g| g.quant.is_none());
    if !float {
        return None;
    }
    Some(BlockW {
        norm1: gains_w(block.norm1.weights.as_ref(), take),
        attn_in: linear_w(&attention.linear_in, take)?,
        attn_out: linear_w(&attention.linear_out, take)?,
        heads: attention.heads,
        hv: attention.hv,
        hs: attention.hs,
        norm2: gains_w(block.norm2.weights.as_ref(), take),
        glus: block
            .mlp
            .glus
            .iter()
            .map(|g| {
                Some(GluW {
                    linear: linear_w(&g.linear, take)?,
                    act_s: g.act_s,
                    act_v: g.act_v,
                })
            })
            .collect::<Option<_>>()?,
        last: linear_w(&block.mlp.last, take)?,
    })
}

impl<W> NetW<W> {
    /// Every weight of `layers` handed to `take` in the walk's order; `None` when a layer
    /// is not a float layer the kernels compute (fixed point, an unmerged adapter, a
    /// missing scalar layer).
    pub(super) fn walk<'t>(
        layers: SlimLayers<'t>,
        take: &mut impl FnMut(&'t Tensor) -> W,
    ) -> Option<Self> {
        Some(Self {
            linear_in: linear_w(layers.linear_in, take)?,
            blocks: layers
                .blocks
                .iter()
                .map(|b| block_w(b, take))
                .collect::<Option<_>>()?,
            linear_out: linear_w(layers.linear_out, take)?,
        })
    }

    /// The same network with every handle mapped by `f`, in the walk's order.
    pub(super) fn map<U>(&self, f: &mut impl FnMut(&W) -> U) -> NetW<U> {
        NetW {
            linear_in: self.linear_in.map(f),
            blocks: self.blocks.iter().map(|b| b.map(f)).collect(),
            linear_out: self.linear_out.map(f),
        }
    }
}

impl<W> LinearW<W> {
    fn map<U>(&self, f: &mut impl FnMut(&W) -> U) -> LinearW<U> {
        LinearW {
            v: f(&self.v),
            v_dims: self.v_dims,
            s: f(&self.s),
            bias: self.bias.as_ref().map(&mut *f),
            s_dims: self.s_dims,
        }
    }
}

impl<W> BlockW<W> {
    fn map<U>(&self, f: &mut impl FnMut(&W) -> U) -> BlockW<U> {
        let mut gains = |g: &Option<(W, W)>| g.as_ref().map(|(v, s)| (f(v), f(s)));
        let norm1 = gains(&self.norm1);
        BlockW {
            norm1,
            attn_in: self.attn_in.map(f),
            attn_out: self.attn_out.map(f),
            heads: self.heads,
            hv: self.hv,
            hs: self.hs,
            norm2: self.norm2.as_ref().map(|(v, s)| (f(v), f(s))),
            glus: self
                .glus
                .iter()
                .map(|g| GluW {
                    linear: g.linear.map(f),
                    act_s: g.act_s,
                    act_v: g.act_v,
                })
                .collect(),
            last: self.last.map(f),
        }
    }
}

impl NetW<Range<usize>> {
    /// The weights as slices of the packed parameters.
    pub(super) fn slices<'a, T>(&self, packed: &'a [T]) -> NetW<&'a [T]> {
        self.map(&mut |r: &Range<usize>| &packed[r.clone()])
    }

    /// Mutable slices of `packed` (the ranges are consecutive in the walk's order, so each
    /// is split off the rest in turn).
    pub(super) fn slices_mut<'a, T>(&self, packed: &'a mut [T]) -> NetW<&'a mut [T]> {
        let mut rest = packed;
        self.map(&mut |r: &Range<usize>| {
            let (head, tail) = std::mem::take(&mut rest).split_at_mut(r.len());
            rest = tail;
            head
        })
    }
}
