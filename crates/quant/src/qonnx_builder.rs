//! The node-by-node builder of a QONNX graph: constants, `Quant` nodes with their
//! types, dense layers.

use std::collections::HashSet;

use crate::dense::Dense;
use crate::error::{QuantError, Result};
use crate::fixed::{FixedType, Overflow, Rounding};
use crate::onnx::{
    attribute_type, AttributeProto, Dimension, NodeProto, TensorProto, TensorShapeProto,
    TensorTypeProto, TypeProto, ValueInfoProto, FLOAT, INT64,
};

/// The domain of QONNX's custom ops.
pub(crate) const QONNX_DOMAIN: &str = "qonnx.custom_op.general";
/// Bits of float32's significand.
pub(crate) const FLOAT32_BITS: u32 = 24;

/// Builds the graph node by node.
#[derive(Default)]
pub(crate) struct Builder {
    /// The nodes, in order.
    pub(crate) nodes: Vec<NodeProto>,
    /// Weights, biases and constants.
    pub(crate) initializers: Vec<TensorProto>,
    /// `Quant` nodes among the nodes.
    pub(crate) quant_nodes: usize,
    /// Appended to the names of the nodes added (not of the constants, which repeated
    /// layers share, unless `unique_constants`): `_p3` while particle 3's copy of the
    /// per-particle layers is built.
    pub(crate) scope: String,
    /// Whether constants are named with the scope too, so that no two nodes read one:
    /// hls4ml folds a constant into its first reader and removes it from under the
    /// others (qonnx's cleanup, which copies shared constants, is cubic in the node
    /// count: too slow for PELICAN's per-pair graphs).
    pub(crate) unique_constants: bool,
    /// The names of the float constants added, for [`Builder::constant`]'s reuse (a
    /// per-pair graph holds hundreds of thousands of them).
    constant_names: HashSet<String>,
}

pub(crate) fn int_attr(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        i,
        r#type: attribute_type::INT,
        ..AttributeProto::default()
    }
}

impl Builder {
    /// A float constant; one already added under `name` (a repeated layer's) is reused.
    pub(crate) fn constant(&mut self, name: &str, dims: &[usize], data: Vec<f32>) -> String {
        let name = if self.unique_constants {
            format!("{name}{}", self.scope)
        } else {
            name.to_owned()
        };
        if !self.constant_names.insert(name.clone()) {
            return name;
        }
        self.initializers.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: FLOAT,
            float_data: data,
            name: name.clone(),
            ..TensorProto::default()
        });
        name
    }

    pub(crate) fn indices(&mut self, name: &str, data: Vec<i64>) -> String {
        self.initializers.push(TensorProto {
            dims: vec![data.len() as i64],
            data_type: INT64,
            int64_data: data,
            name: name.into(),
            ..TensorProto::default()
        });
        name.into()
    }

    pub(crate) fn node(
        &mut self,
        op: &str,
        name: &str,
        inputs: &[&str],
        attribute: Vec<AttributeProto>,
    ) -> String {
        let name = format!("{name}{}", self.scope);
        let output = format!("{name}_out");
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| (*s).to_owned()).collect(),
            output: vec![output.clone()],
            name,
            op_type: op.into(),
            attribute,
            domain: String::new(),
        });
        output
    }

    /// A `Quant` node rounding `input` to `ty`; `what` names the tensor in errors.
    pub(crate) fn quant(&mut self, input: &str, ty: FixedType, what: &str) -> Result<String> {
        if ty.overflow() != Overflow::Sat {
            return Err(QuantError::Export(format!(
                "{what} is {ty}: QONNX's Quant saturates, so only AP_SAT types export"
            )));
        }
        let rounding = match ty.rounding() {
            Rounding::RndConv => "ROUND",
            Rounding::Trn => "FLOOR",
            Rounding::Rnd => {
                return Err(QuantError::Export(format!(
                    "{what} is {ty}: QONNX has no rounding of halves upwards; use AP_RND_CONV \
                     (QONNX ROUND) or AP_TRN (FLOOR)"
                )))
            }
        };
        let name = format!("{what}_quant");
        let scale = self.constant(&format!("{name}_scale"), &[], vec![ty.lsb() as f32]);
        let zero = self.constant(&format!("{name}_zeropt"), &[], vec![0.0]);
        let bits = self.constant(&format!("{name}_bitwidth"), &[], vec![ty.width() as f32]);
        self.quant_nodes += 1;
        let output = self.node(
            "Quant",
            &name,
            &[input, &scale, &zero, &bits],
            vec![
                int_attr("signed", i64::from(ty.is_signed())),
                int_attr("narrow", 0),
                AttributeProto {
                    name: "rounding_mode".into(),
                    s: rounding.as_bytes().to_vec(),
                    r#type: attribute_type::STRING,
                    ..AttributeProto::default()
                },
            ],
        );
        self.nodes.last_mut().expect("just pushed").domain = QONNX_DOMAIN.into();
        Ok(output)
    }

    /// `relu?(result(accum(x W^T + b)))`.
    pub(crate) fn dense(&mut self, x: &str, layer: &Dense) -> Result<String> {
        let name = layer.name.replace('.', "_");
        let p = &layer.precision;
        let mut transposed = vec![0f32; layer.inputs * layer.outputs];
        for o in 0..layer.outputs {
            for k in 0..layer.inputs {
                transposed[k * layer.outputs + o] = layer.weight[o * layer.inputs + k] as f32;
            }
        }
        let w = self.constant(
            &format!("{name}_weight"),
            &[layer.inputs, layer.outputs],
            transposed,
        );
        let w = self.quant(&w, p.weight, &format!("{name}_weight"))?;
        let b = self.constant(
            &format!("{name}_bias"),
            &[layer.outputs],
            layer.bias.iter().map(|&v| v as f32).collect(),
        );
        let b = self.quant(&b, p.bias, &format!("{name}_bias"))?;
        let product = self.node("MatMul", &format!("{name}_matmul"), &[x, &w], vec![]);
        let mut y = self.node("Add", &format!("{name}_add"), &[&product, &b], vec![]);
        if let Some(accum) = p.accum {
            y = self.quant(&y, accum, &format!("{name}_accum"))?;
        }
        y = self.quant(&y, p.result, &format!("{name}_result"))?;
        if layer.relu {
            y = self.node("Relu", &format!("{name}_relu"), &[&y], vec![]);
        }
        Ok(y)
    }
}

pub(crate) fn value_info(name: &str, dims: &[Option<usize>]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| match d {
            Some(n) => Dimension {
                dim_value: Some(*n as i64),
                dim_param: None,
            },
            None => Dimension {
                dim_value: None,
                dim_param: Some("batch".into()),
            },
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TensorTypeProto {
                elem_type: FLOAT,
                shape: Some(TensorShapeProto { dim }),
            }),
        }),
    }
}
