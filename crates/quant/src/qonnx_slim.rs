//! QONNX of L-GATr-slim's token stage ([`crate::SlimStage`]) on stacked tokens: inputs
//! `tokens` `[batch, T, 4 + S]` (each token's four-vector, then its scalars) and `mask`
//! `[batch, T, 1]` (the class token first), the tensors as the float forward lays them out
//! (vectors `[batch, T, 4, C]`), padded tokens computed and masked out of the attention as
//! the forward does.
//!
//! A lookup table is `Quant` to its input type, the raw value (times `2^F`, minus the
//! type's smallest raw value) cast to an index, and `Gather` from the table's entries:
//! standard ONNX that any executor runs exactly. hls4ml's ONNX frontend converts none of
//! `Gather` on tables, rank-6 `Transpose` or `MatMul` between activations: the export is
//! for QONNX executors and FINN-style flows, not hls4ml's (README, "Trigger taggers").

use crate::error::{QuantError, Result};
use crate::fixed::FixedType;
use crate::onnx::{AttributeProto, ValueInfoProto};
use crate::qonnx_builder::{int_attr, value_info, Builder, FLOAT32_BITS};
use crate::slim::{
    SlimAttentionLayer, SlimBlockLayer, SlimGluLayer, SlimLinearLayer, SlimNormLayer, SlimStage,
};
use crate::table::Table;

/// The Minkowski metric as a `[4, 1]` column.
const METRIC: [f32; 4] = [1.0, -1.0, -1.0, -1.0];
/// The key bias is `(mask - 1) 1e30`: 0 for real tokens, -1e30 for padded ones (the
/// float forward's).
const KEY_BIAS_SCALE: f32 = 1e30;

/// The export's inputs for `tokens` tokens.
pub(crate) fn inputs(stage: &SlimStage, tokens: usize) -> Vec<ValueInfoProto> {
    vec![
        value_info("tokens", &[None, Some(tokens), Some(stage.features())]),
        value_info("mask", &[None, Some(tokens), Some(1)]),
    ]
}

/// The stage's sums that may need more than float32's 24 bits, by stage, with the most
/// bits each needs (the widths its validation checks, for `tokens` tokens).
///
/// # Errors
/// As [`SlimStage::validate`].
pub(crate) fn inexact(
    stage: &SlimStage,
    input: FixedType,
    tokens: usize,
) -> Result<Vec<(String, u32)>> {
    let mut worst: Vec<(String, u32)> = Vec::new();
    for (name, bits) in stage.sum_widths(input, tokens)? {
        if bits <= FLOAT32_BITS {
            continue;
        }
        match worst.iter_mut().find(|(n, _)| *n == name) {
            Some(w) => w.1 = w.1.max(bits),
            None => worst.push((name, bits)),
        }
    }
    Ok(worst)
}

/// Builds the stage; returns the class token's scalars `[batch, S]`.
///
/// # Errors
/// [`QuantError::Export`] for a type QONNX cannot express.
pub(crate) fn slim_stage(
    b: &mut Builder,
    stage: &SlimStage,
    input: FixedType,
    tokens: usize,
) -> Result<String> {
    let mut g = Graph { b, tokens };
    let x = g.b.quant("tokens", input, "input")?;
    let v = g.slice(&x, 0, 4, 2, "input_vectors");
    let v = g.unsqueeze(&v, 3, "input_vectors_channel");
    let s = g.slice(&x, 4, stage.features(), 2, "input_scalars");
    let key_mask = g.reshape("mask", &[-1, 1, 1, tokens as i64], "key_mask");
    let one = g.b.constant("one", &[], vec![1.0]);
    let masked = g.b.constant("key_bias_scale", &[], vec![KEY_BIAS_SCALE]);
    let shifted =
        g.b.node("Sub", "key_mask_minus_one", &[&key_mask, &one], vec![]);
    let key_bias = g.b.node("Mul", "key_bias", &[&shifted, &masked], vec![]);
    let keys = Keys {
        mask: key_mask,
        bias: key_bias,
    };
    let (mut v, mut s) = g.linear(&stage.linear_in, &v, &s)?;
    for block in &stage.blocks {
        (v, s) = g.block(block, (&v, &s), &keys)?;
    }
    let first = g.b.indices("class_token", vec![0]);
    let class = g.b.node(
        "Gather",
        "class_token_gather",
        &[&s, &first],
        vec![int_attr("axis", 1)],
    );
    Ok(g.reshape(
        &class,
        &[-1, stage.channels().1 as i64],
        "class_token_scalars",
    ))
}

/// The key mask `[batch, 1, 1, T]` and bias (0 or -1e30).
struct Keys {
    mask: String,
    bias: String,
}

struct Graph<'a> {
    b: &'a mut Builder,
    tokens: usize,
}

fn path(name: &str) -> String {
    name.replace('.', "_")
}

impl Graph<'_> {
    fn int64(&mut self, name: &str, data: Vec<i64>) -> String {
        self.b.indices(name, data)
    }

    fn slice(&mut self, x: &str, start: usize, end: usize, axis: i64, name: &str) -> String {
        let starts = self.int64(&format!("{name}_starts"), vec![start as i64]);
        let ends = self.int64(&format!("{name}_ends"), vec![end as i64]);
        let axes = self.int64(&format!("{name}_axes"), vec![axis]);
        self.b
            .node("Slice", name, &[x, &starts, &ends, &axes], vec![])
    }

    fn unsqueeze(&mut self, x: &str, axis: i64, name: &str) -> String {
        let axes = self.int64(&format!("{name}_axes"), vec![axis]);
        self.b.node("Unsqueeze", name, &[x, &axes], vec![])
    }

    fn reshape(&mut self, x: &str, shape: &[i64], name: &str) -> String {
        let shape = self.int64(&format!("{name}_shape"), shape.to_vec());
        self.b.node("Reshape", name, &[x, &shape], vec![])
    }

    fn transpose(&mut self, x: &str, perm: &[i64], name: &str) -> String {
        let perm = AttributeProto {
            name: "perm".into(),
            ints: perm.to_vec(),
            r#type: crate::onnx::attribute_type::INTS,
            ..AttributeProto::default()
        };
        self.b.node("Transpose", name, &[x], vec![perm])
    }

    fn reduce_sum(&mut self, x: &str, axis: i64, keep: bool, name: &str) -> String {
        let axes = self.int64(&format!("{name}_axes"), vec![axis]);
        self.b.node(
            "ReduceSum",
            name,
            &[x, &axes],
            vec![int_attr("keepdims", i64::from(keep))],
        )
    }

    fn mul(&mut self, a: &str, b: &str, name: &str) -> String {
        self.b.node("Mul", name, &[a, b], vec![])
    }

    fn metric(&mut self) -> String {
        self.b.constant("metric", &[4, 1], METRIC.to_vec())
    }

    /// `table` at `x`: `Quant` to its input type, the raw value as an index, `Gather`.
    fn table(&mut self, x: &str, table: &Table, name: &str) -> Result<String> {
        let q = self.b.quant(x, table.input, &format!("{name}_input"))?;
        let scale = self.b.constant(
            &format!("{name}_scale"),
            &[],
            vec![(1.0 / table.input.lsb()) as f32],
        );
        let offset = self.b.constant(
            &format!("{name}_offset"),
            &[],
            vec![table.input.min_raw() as f32],
        );
        let raw = self.mul(&q, &scale, &format!("{name}_raw"));
        let index = self
            .b
            .node("Sub", &format!("{name}_index"), &[&raw, &offset], vec![]);
        let index = self.b.node(
            "Cast",
            &format!("{name}_cast"),
            &[&index],
            vec![int_attr("to", i64::from(crate::onnx::INT64))],
        );
        let entries: Vec<f32> = table
            .raw_entries()
            .iter()
            .map(|&r| table.output.value(r) as f32)
            .collect();
        let entries = self
            .b
            .constant(&format!("{name}_entries"), &[entries.len()], entries);
        Ok(self.b.node(
            "Gather",
            &format!("{name}_lookup"),
            &[&entries, &index],
            vec![int_attr("axis", 0)],
        ))
    }

    /// A `SlimLinear` on vectors `[..., 4, C]` and scalars `[..., S]`.
    fn linear(&mut self, l: &SlimLinearLayer, v: &str, s: &str) -> Result<(String, String)> {
        let (Some(dv), Some(ds)) = (&l.vectors, &l.scalars) else {
            return Err(QuantError::Export(format!(
                "{}: a map without vector or scalar channels does not export",
                l.name
            )));
        };
        Ok((self.b.dense(v, dv)?, self.b.dense(s, ds)?))
    }

    /// The RMS norm of vectors `[..., 4, C]` and scalars `[..., S]`.
    fn norm(&mut self, n: &SlimNormLayer, v: &str, s: &str) -> Result<(String, String)> {
        let name = path(&n.name);
        let squares = self.mul(v, v, &format!("{name}_vv"));
        let metric = self.metric();
        let squares = self.mul(&squares, &metric, &format!("{name}_vv_metric"));
        let squares = self.reduce_sum(&squares, -2, false, &format!("{name}_minkowski"));
        let squares = self
            .b
            .node("Abs", &format!("{name}_abs"), &[&squares], vec![]);
        let vector_sum = self.reduce_sum(&squares, -1, true, &format!("{name}_vector_sum"));
        let ss = self.mul(s, s, &format!("{name}_ss"));
        let scalar_sum = self.reduce_sum(&ss, -1, true, &format!("{name}_scalar_sum"));
        let sum = self.b.node(
            "Add",
            &format!("{name}_sum"),
            &[&vector_sum, &scalar_sum],
            vec![],
        );
        let factor = self.table(&sum, &n.table, &format!("{name}_factor"))?;
        let factor_v = self.unsqueeze(&factor, -1, &format!("{name}_factor_v"));
        let mut v = self.mul(v, &factor_v, &format!("{name}_v"));
        let mut s = self.mul(s, &factor, &format!("{name}_s"));
        if let Some((gv, gs)) = &n.gains {
            let to_f32 = |g: &[f64]| g.iter().map(|&x| x as f32).collect::<Vec<_>>();
            let cv = self
                .b
                .constant(&format!("{name}_weight_v"), &[gv.len()], to_f32(gv));
            let cs = self
                .b
                .constant(&format!("{name}_weight_s"), &[gs.len()], to_f32(gs));
            v = self.mul(&v, &cv, &format!("{name}_gain_v"));
            s = self.mul(&s, &cs, &format!("{name}_gain_s"));
        }
        Ok((
            self.b.quant(&v, n.result, &format!("{name}_v_result"))?,
            self.b.quant(&s, n.result, &format!("{name}_s_result"))?,
        ))
    }

    fn residual(&mut self, x: &str, update: &str, ty: FixedType, name: &str) -> Result<String> {
        let sum = self.b.node("Add", name, &[x, update], vec![]);
        self.b.quant(&sum, ty, &format!("{name}_result"))
    }

    fn block(
        &mut self,
        block: &SlimBlockLayer,
        (v, s): (&str, &str),
        keys: &Keys,
    ) -> Result<(String, String)> {
        let name = path(&block.name);
        let (nv, ns) = self.norm(&block.norm1, v, s)?;
        let (av, a_s) = self.attention(&block.attention, (&nv, &ns), keys)?;
        let v = self.residual(v, &av, block.residual, &format!("{name}_residual1_v"))?;
        let s = self.residual(s, &a_s, block.residual, &format!("{name}_residual1_s"))?;
        let (mut hv, mut hs) = self.norm(&block.norm2, &v, &s)?;
        for glu in &block.glus {
            (hv, hs) = self.glu(glu, &hv, &hs)?;
        }
        let (uv, us) = self.linear(&block.last, &hv, &hs)?;
        Ok((
            self.residual(&v, &uv, block.residual, &format!("{name}_residual2_v"))?,
            self.residual(&s, &us, block.residual, &format!("{name}_residual2_s"))?,
        ))
    }

    fn glu(&mut self, glu: &SlimGluLayer, v: &str, s: &str) -> Result<(String, String)> {
        let name = path(&glu.name);
        let (wv, ws) = self.linear(&glu.linear, v, s)?;
        let (ov3, os2) = glu.linear.outputs();
        let (ov, os) = (ov3 / 3, os2 / 2);
        let pre = self.slice(&wv, 0, ov, -1, &format!("{name}_pre_v"));
        let a = self.slice(&wv, ov, 2 * ov, -1, &format!("{name}_a"));
        let c = self.slice(&wv, 2 * ov, 3 * ov, -1, &format!("{name}_b"));
        let ab = self.mul(&a, &c, &format!("{name}_ab"));
        let metric = self.metric();
        let ab = self.mul(&ab, &metric, &format!("{name}_ab_metric"));
        let dot = self.reduce_sum(&ab, -2, true, &format!("{name}_dot"));
        let gate = self.table(&dot, &glu.gate_v, &format!("{name}_gate_v"))?;
        let v = self.mul(&gate, &pre, &format!("{name}_gated_v"));
        let pre_s = self.slice(&ws, 0, os, -1, &format!("{name}_pre_s"));
        let gate_in = self.slice(&ws, os, 2 * os, -1, &format!("{name}_gate_in_s"));
        let gate = self.table(&gate_in, &glu.gate_s, &format!("{name}_gate_s"))?;
        let s = self.mul(&gate, &pre_s, &format!("{name}_gated_s"));
        Ok((
            self.b.quant(&v, glu.result, &format!("{name}_v_result"))?,
            self.b.quant(&s, glu.result, &format!("{name}_s_result"))?,
        ))
    }

    #[allow(clippy::too_many_lines)]
    fn attention(
        &mut self,
        a: &SlimAttentionLayer,
        (v, s): (&str, &str),
        keys: &Keys,
    ) -> Result<(String, String)> {
        let name = path(&a.name);
        let t = self.tokens as i64;
        let (h, (hv, hs)) = (a.heads as i64, a.head_channels);
        let (hv, hs) = (hv as i64, hs as i64);
        let (qv, qs) = self.linear(&a.linear_in, v, s)?;
        // Output channel (part, c, head), the head fastest, as the float forward splits it.
        let qv = self.reshape(&qv, &[0, t, 4, 3, hv, h], &format!("{name}_qkv_v_split"));
        let qv = self.transpose(&qv, &[3, 0, 5, 1, 2, 4], &format!("{name}_qkv_v")); // [3, B, H, T, 4, hv]
        let qs = self.reshape(&qs, &[0, t, 3, hs, h], &format!("{name}_qkv_s_split"));
        let qs = self.transpose(&qs, &[2, 0, 4, 1, 3], &format!("{name}_qkv_s")); // [3, B, H, T, hs]
        let (qv, qs) = self.norm(&a.norm, &qv, &qs)?;
        let mut parts = Vec::new();
        for (k, part) in ["q", "k", "v"].iter().enumerate() {
            let index = self.int64(&format!("{name}_{part}_index"), vec![k as i64]);
            let gv = self.b.node(
                "Gather",
                &format!("{name}_{part}_v"),
                &[&qv, &index],
                vec![int_attr("axis", 0)],
            );
            let gs = self.b.node(
                "Gather",
                &format!("{name}_{part}_s"),
                &[&qs, &index],
                vec![int_attr("axis", 0)],
            );
            let mut gv = self.reshape(&gv, &[-1, h, t, 4, hv], &format!("{name}_{part}_v4"));
            if k == 0 {
                let metric = self.metric();
                gv = self.mul(&gv, &metric, &format!("{name}_q_lowered"));
            }
            let gv = self.reshape(&gv, &[-1, h, t, 4 * hv], &format!("{name}_{part}_vflat"));
            let gs = self.reshape(&gs, &[-1, h, t, hs], &format!("{name}_{part}_sflat"));
            parts.push(self.b.node(
                "Concat",
                &format!("{name}_{part}"),
                &[&gv, &gs],
                vec![int_attr("axis", -1)],
            ));
        }
        let kt = self.transpose(&parts[1], &[0, 1, 3, 2], &format!("{name}_k_t"));
        let logits = self.b.node(
            "MatMul",
            &format!("{name}_logits"),
            &[&parts[0], &kt],
            vec![],
        );
        let biased = self.b.node(
            "Add",
            &format!("{name}_biased"),
            &[&logits, &keys.bias],
            vec![],
        );
        let max = self.b.node(
            "ReduceMax",
            &format!("{name}_max"),
            &[&biased],
            vec![
                AttributeProto {
                    name: "axes".into(),
                    ints: vec![-1],
                    r#type: crate::onnx::attribute_type::INTS,
                    ..AttributeProto::default()
                },
                int_attr("keepdims", 1),
            ],
        );
        let shifted = self
            .b
            .node("Sub", &format!("{name}_shifted"), &[&logits, &max], vec![]);
        let numerators = self.table(&shifted, &a.exp, &format!("{name}_exp"))?;
        let numerators = self.mul(&numerators, &keys.mask, &format!("{name}_numerators"));
        let total = self.reduce_sum(&numerators, -1, true, &format!("{name}_total"));
        let recip = self.table(&total, &a.recip, &format!("{name}_recip"))?;
        let p = self.mul(&numerators, &recip, &format!("{name}_p"));
        let p = self
            .b
            .quant(&p, a.probabilities, &format!("{name}_probabilities"))?;
        let out = self.b.node(
            "MatMul",
            &format!("{name}_weighted"),
            &[&p, &parts[2]],
            vec![],
        );
        let out = self
            .b
            .quant(&out, a.heads_result, &format!("{name}_heads"))?;
        let ov = self.slice(&out, 0, (4 * hv) as usize, -1, &format!("{name}_out_v"));
        let ov = self.reshape(&ov, &[-1, h, t, 4, hv], &format!("{name}_out_v5"));
        let ov = self.transpose(&ov, &[0, 2, 3, 1, 4], &format!("{name}_out_v_t"));
        let ov = self.reshape(&ov, &[-1, t, 4, h * hv], &format!("{name}_merged_v"));
        let os = self.slice(
            &out,
            (4 * hv) as usize,
            (4 * hv + hs) as usize,
            -1,
            &format!("{name}_out_s"),
        );
        let os = self.transpose(&os, &[0, 2, 1, 3], &format!("{name}_out_s_t"));
        let os = self.reshape(&os, &[-1, t, h * hs], &format!("{name}_merged_s"));
        self.linear(&a.linear_out, &ov, &os)
    }
}
