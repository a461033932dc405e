//! The tagger's network on a batch of jets (their real tokens as the columns of
//! feature-major activations), forward with or without what the backward needs, and the
//! backward to every weight.

use super::attention::{attention_backward, attention_forward, HeadKept, HeadShape};
use super::linear::{
    add, add_columns, add_selected, linear_backward, linear_forward, select, Cols,
};
use super::pointwise::{gate_backward, gate_forward, norm_backward, norm_forward, Gates, Normed};
use super::weights::{BlockW, NetW};
use super::Real;
use crate::fused::vector_math::lane_sum;

/// The real tokens of a batch: vectors `[1, 4 N]`, scalars `[in_s, N]`, jets' columns.
pub(super) struct Tokens<T> {
    pub(super) v: Vec<T>,
    pub(super) s: Vec<T>,
    pub(super) cols: Cols,
}

/// A pair of feature-major vector and scalar activations.
type Pair<T> = (Vec<T>, Vec<T>);

fn view<T>(pair: &Pair<T>) -> (&[T], &[T]) {
    (&pair.0, &pair.1)
}

/// One gated unit's input, linear outputs and gates.
struct GluKept<T> {
    input: Pair<T>,
    wide: Pair<T>,
    gates: Gates<T>,
}

/// What a block's backward needs.
struct BlockKept<T> {
    input: Pair<T>,
    norm1: Normed<T>,
    heads: Vec<HeadKept<T>>,
    merged: Pair<T>,
    mid: Pair<T>,
    norm2_factors: Vec<T>,
    glus: Vec<GluKept<T>>,
    hidden: Pair<T>,
    cols: Cols,
    queries: Cols,
}

/// What the network's backward needs.
pub(super) struct Kept<T> {
    blocks: Vec<BlockKept<T>>,
    last: Pair<T>,
    readout: Cols,
}

fn head_shape<W>(block: &BlockW<W>) -> HeadShape {
    HeadShape {
        heads: block.heads,
        hv: block.hv,
        hs: block.hs,
    }
}

/// The logits `[jets, classes]` (the class token's scalar outputs, the first column of
/// each jet, or with `mean` their mean over the jet's tokens) and, with `keep`, what the
/// backward needs.
pub(super) fn forward<T: Real>(
    net: &NetW<&[T]>,
    tokens: &Tokens<T>,
    mean: bool,
    keep: bool,
) -> (Vec<T>, Option<Kept<T>>) {
    let mut cols = tokens.cols.clone();
    let mut stream = linear_forward(&net.linear_in, (&tokens.v, &tokens.s), cols.total());
    let mut blocks = Vec::new();
    let last = net.blocks.len().saturating_sub(1);
    for (i, block) in net.blocks.iter().enumerate() {
        // With a class token, the last block only needs the class token's output.
        let queries = if i == last && !mean {
            cols.first(1)
        } else {
            cols.clone()
        };
        let (next, kept) = block_forward(block, stream, &cols, &queries, keep);
        stream = next;
        blocks.extend(kept);
        cols = queries;
    }
    let readout = if mean { cols.clone() } else { cols.first(1) };
    let stream = (
        select(&stream.0, &cols, &readout, 4),
        select(&stream.1, &cols, &readout, 1),
    );
    let (_, out) = linear_forward(&net.linear_out, view(&stream), readout.total());
    let classes = net.linear_out.s_dims.1;
    let mut logits = vec![T::zero(); readout.jets() * classes];
    let width = readout.total();
    for (k, row) in out.chunks_exact(width.max(1)).enumerate() {
        for j in 0..readout.jets() {
            let r = readout.range(j);
            let count: T = T::from(r.len()).expect("a token count");
            logits[j * classes + k] = lane_sum(r.len(), |i| row[r.start + i]) / count;
        }
    }
    let kept = keep.then_some(Kept {
        blocks,
        last: stream,
        readout,
    });
    (logits, kept)
}

fn block_forward<T: Real>(
    block: &BlockW<&[T]>,
    input: Pair<T>,
    cols: &Cols,
    queries: &Cols,
    keep: bool,
) -> (Pair<T>, Option<BlockKept<T>>) {
    let (n, q) = (cols.total(), queries.total());
    let norm1 = norm_forward(view(&input), n, block.norm1.as_ref());
    let wide = linear_forward(&block.attn_in, (&norm1.v, &norm1.s), n);
    let (merged, heads) = attention_forward(head_shape(block), view(&wide), cols, queries, keep);
    let (mut mid_v, mut mid_s) = linear_forward(&block.attn_out, view(&merged), q);
    add_columns(&mut mid_v, &input.0, cols, queries, 4);
    add_columns(&mut mid_s, &input.1, cols, queries, 1);
    let mid = (mid_v, mid_s);
    let norm2 = norm_forward(view(&mid), q, block.norm2.as_ref());
    let norm2_factors = norm2.factors;
    let mut hidden = (norm2.v, norm2.s);
    let mut glus = Vec::new();
    for glu in &block.glus {
        let wide = linear_forward(&glu.linear, view(&hidden), q);
        let (out, gates) = gate_forward((glu.act_s, glu.act_v), view(&wide), q, keep);
        if let Some(gates) = gates {
            glus.push(GluKept {
                input: hidden,
                wide,
                gates,
            });
        }
        hidden = out;
    }
    let (mut out_v, mut out_s) = linear_forward(&block.last, view(&hidden), q);
    add(&mut out_v, &mid.0);
    add(&mut out_s, &mid.1);
    let kept = keep.then(|| BlockKept {
        input,
        norm1,
        heads,
        merged,
        mid,
        norm2_factors,
        glus,
        hidden,
        cols: cols.clone(),
        queries: queries.clone(),
    });
    ((out_v, out_s), kept)
}

/// The gradients of every weight, written into `grads` (laid out as `net`), for the
/// logits' gradients `d_logits` `[jets, classes]`.
pub(super) fn backward<T: Real>(
    net: &NetW<&[T]>,
    grads: &mut NetW<&mut [T]>,
    tokens: &Tokens<T>,
    kept: &Kept<T>,
    d_logits: &[T],
) {
    let classes = net.linear_out.s_dims.1;
    let readout = &kept.readout;
    let width = readout.total();
    let mut d_out = vec![T::zero(); classes * width];
    for (k, row) in d_out.chunks_exact_mut(width.max(1)).enumerate() {
        for j in 0..readout.jets() {
            let r = readout.range(j);
            let share = d_logits[j * classes + k] / T::from(r.len()).expect("a token count");
            row[r].iter_mut().for_each(|x| *x = share);
        }
    }
    let no_vectors: Vec<T> = Vec::new();
    let (d_v, d_s) = linear_backward(
        (&net.linear_out, &mut grads.linear_out),
        view(&kept.last),
        (&no_vectors, &d_out),
        width,
        true,
    )
    .expect("input gradients were asked for");
    // Back from the readout columns to the last block's output columns.
    let block_out = kept.blocks.last().map_or(&tokens.cols, |b| &b.queries);
    let mut d_stream = (
        vec![T::zero(); d_v.len() / width.max(1) * block_out.total()],
        vec![T::zero(); d_s.len() / width.max(1) * block_out.total()],
    );
    add_selected(&mut d_stream.0, &d_v, block_out, readout, 4);
    add_selected(&mut d_stream.1, &d_s, block_out, readout, 1);
    for ((block, grad), k) in net
        .blocks
        .iter()
        .zip(grads.blocks.iter_mut())
        .zip(&kept.blocks)
        .rev()
    {
        d_stream = block_backward(block, grad, k, &d_stream);
    }
    linear_backward(
        (&net.linear_in, &mut grads.linear_in),
        (&tokens.v, &tokens.s),
        view(&d_stream),
        tokens.cols.total(),
        false,
    );
}

fn block_backward<T: Real>(
    block: &BlockW<&[T]>,
    grad: &mut BlockW<&mut [T]>,
    kept: &BlockKept<T>,
    d_out: &Pair<T>,
) -> Pair<T> {
    let (n, q) = (kept.cols.total(), kept.queries.total());
    let asked = "input gradients were asked for";
    // The MLP branch.
    let mut d_hidden = linear_backward(
        (&block.last, &mut grad.last),
        view(&kept.hidden),
        view(d_out),
        q,
        true,
    )
    .expect(asked);
    for ((glu, g), k) in block
        .glus
        .iter()
        .zip(grad.glus.iter_mut())
        .zip(&kept.glus)
        .rev()
    {
        let d_wide = gate_backward(&k.gates, view(&k.wide), view(&d_hidden), q);
        d_hidden = linear_backward(
            (&glu.linear, &mut g.linear),
            view(&k.input),
            view(&d_wide),
            q,
            true,
        )
        .expect(asked);
    }
    let (mut d_mid_v, mut d_mid_s) = norm_backward(
        view(&kept.mid),
        &kept.norm2_factors,
        block.norm2.as_ref(),
        view(&d_hidden),
        grad.norm2.as_mut().map(|(v, s)| (&mut **v, &mut **s)),
    );
    add(&mut d_mid_v, &d_out.0);
    add(&mut d_mid_s, &d_out.1);
    // The attention branch.
    let d_merged = linear_backward(
        (&block.attn_out, &mut grad.attn_out),
        view(&kept.merged),
        (&d_mid_v, &d_mid_s),
        q,
        true,
    )
    .expect(asked);
    let d_wide = attention_backward(
        head_shape(block),
        &kept.heads,
        view(&d_merged),
        &kept.cols,
        &kept.queries,
    );
    let d_norm1 = linear_backward(
        (&block.attn_in, &mut grad.attn_in),
        (&kept.norm1.v, &kept.norm1.s),
        view(&d_wide),
        n,
        true,
    )
    .expect(asked);
    let (mut d_v, mut d_s) = norm_backward(
        view(&kept.input),
        &kept.norm1.factors,
        block.norm1.as_ref(),
        view(&d_norm1),
        grad.norm1.as_mut().map(|(v, s)| (&mut **v, &mut **s)),
    );
    add_selected(&mut d_v, &d_mid_v, &kept.cols, &kept.queries, 4);
    add_selected(&mut d_s, &d_mid_s, &kept.cols, &kept.queries, 1);
    (d_v, d_s)
}
