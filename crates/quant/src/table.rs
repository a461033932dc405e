//! Lookup tables: how fixed-point hardware computes a nonlinear function (hls4ml's
//! activation, softmax and normalisation layers all read precomputed tables).
//!
//! A [`Table`] reads a value of its `input` type (a cast of the exact sum before it) and
//! returns `output.quantize(f(x))` for its [`TableFn`] `f`, evaluated in f64: one entry
//! per raw value of the input type, so its width bounds the table's size
//! ([`MAX_TABLE_BITS`]). Quantisation-aware training computes the same entries through
//! [`table_lookup`] (so its forward is the hardware's, bit for bit) with the derivative
//! of the float function as the straight-through gradient.

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Tensor};
use serde::{Deserialize, Serialize};

use crate::dense::layer_error;
use crate::error::Result;
use crate::fixed::{FixedType, Overflow};

/// The widest table input: 2^16 entries.
pub const MAX_TABLE_BITS: u32 = 16;

/// An activation a table can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Activation {
    /// max(0, x).
    Relu,
    /// 1 / (1 + e^-x).
    Sigmoid,
    /// tanh(x).
    Tanh,
    /// GELU in its tanh approximation.
    Gelu,
    /// x sigmoid(x).
    Silu,
}

/// sqrt(2 / pi), GELU's tanh approximation's constant.
const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
/// The cubic coefficient of GELU's tanh approximation.
const GELU_CUBIC: f64 = 0.044_715;

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

impl Activation {
    /// Its value.
    pub fn eval(self, x: f64) -> f64 {
        match self {
            Self::Relu => x.max(0.0),
            Self::Sigmoid => sigmoid(x),
            Self::Tanh => x.tanh(),
            Self::Gelu => 0.5 * x * (1.0 + (SQRT_2_OVER_PI * (x + GELU_CUBIC * x.powi(3))).tanh()),
            Self::Silu => x * sigmoid(x),
        }
    }

    /// Its derivative.
    pub fn derivative(self, x: f64) -> f64 {
        match self {
            Self::Relu => f64::from(u8::from(x > 0.0)),
            Self::Sigmoid => sigmoid(x) * (1.0 - sigmoid(x)),
            Self::Tanh => 1.0 - x.tanh().powi(2),
            Self::Gelu => {
                let inner = SQRT_2_OVER_PI * (x + GELU_CUBIC * x.powi(3));
                let t = inner.tanh();
                let d_inner = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_CUBIC * x * x);
                0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * d_inner
            }
            Self::Silu => sigmoid(x) * (1.0 + x * (1.0 - sigmoid(x))),
        }
    }
}

/// The function a table holds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum TableFn {
    /// `1 / sqrt(x / channels + epsilon)`: an RMS norm's factor from the sum of squares of
    /// its `channels` values.
    InvRms {
        /// Values the sum runs over.
        channels: usize,
        /// Added to the mean.
        epsilon: f64,
    },
    /// `exp(scale x)`: softmax numerators from the logits minus their maximum (the
    /// attention's `1 / sqrt(d)` folded in as `scale`).
    Exp {
        /// Multiplies the input.
        scale: f64,
    },
    /// `1 / x` for `x > 0` (else the output type's largest value): a softmax's
    /// reciprocal denominator.
    Recip,
    /// `act(scale x)`: a gate (L-GATr-slim's vector gates take half the Minkowski product).
    Activation {
        /// The activation.
        act: Activation,
        /// Multiplies the input.
        scale: f64,
    },
}

impl TableFn {
    /// Its value at `x`.
    pub fn eval(self, x: f64) -> f64 {
        match self {
            Self::InvRms { channels, epsilon } => 1.0 / (x / channels as f64 + epsilon).sqrt(),
            Self::Exp { scale } => (scale * x).exp(),
            Self::Recip if x > 0.0 => 1.0 / x,
            Self::Recip => f64::INFINITY,
            Self::Activation { act, scale } => act.eval(scale * x),
        }
    }

    /// Its derivative at `x`.
    pub fn derivative(self, x: f64) -> f64 {
        match self {
            Self::InvRms { channels, epsilon } => {
                let c = channels as f64;
                -0.5 / c * (x / c + epsilon).powf(-1.5)
            }
            Self::Exp { scale } => scale * (scale * x).exp(),
            Self::Recip if x > 0.0 => -1.0 / (x * x),
            Self::Recip => 0.0,
            Self::Activation { act, scale } => scale * act.derivative(scale * x),
        }
    }
}

/// A lookup table: `output.quantize(function(input.quantize(x)))`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Table {
    /// The function.
    pub function: TableFn,
    /// The type it reads (its raw values index the entries).
    pub input: FixedType,
    /// The type it returns.
    pub output: FixedType,
}

impl Table {
    /// The entry for the input value `x` (already a value of the input type).
    pub fn entry(&self, x: f64) -> f64 {
        self.output.quantize(self.function.eval(x))
    }

    /// Every entry as a raw output integer, for raw inputs `input.min_raw()..=max_raw()`.
    pub fn raw_entries(&self) -> Vec<i64> {
        (self.input.min_raw()..=self.input.max_raw())
            .map(|raw| {
                self.output
                    .quantize_raw(self.function.eval(self.input.value(raw)))
            })
            .collect()
    }

    /// Checks that the table is small enough to build.
    ///
    /// # Errors
    /// [`crate::QuantError::Layer`] naming `stage` and `setting`, the setting that gave
    /// the table its input type.
    pub fn check(&self, stage: &str, setting: &str) -> Result<()> {
        if self.input.width() > MAX_TABLE_BITS {
            return Err(layer_error(
                stage,
                format!(
                    "{setting} {} has {} bits; a table reads at most {MAX_TABLE_BITS} \
                     (2^{MAX_TABLE_BITS} entries)",
                    self.input,
                    self.input.width()
                ),
            ));
        }
        Ok(())
    }
}

/// The lookup as a candle op.
struct Lookup(Table);

impl CustomOp1 for Lookup {
    fn name(&self) -> &'static str {
        "noether-table-lookup"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let t = self.0;
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("table lookup: the input must be contiguous");
        };
        let CpuStorage::F64(v) = storage else {
            candle_core::bail!("table lookup: only f64 is supported (fixed point runs in f64)");
        };
        let out = v[start..end]
            .iter()
            .map(|&x| t.entry(t.input.quantize(x)))
            .collect();
        Ok((CpuStorage::F64(out), layout.shape().clone()))
    }

    /// The float function's derivative at the quantised input, zero where the input
    /// saturated (as [`crate::fake_quantize`]'s gradient).
    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let t = self.0;
        let (lo, hi) = (
            t.input.value(t.input.min_raw()),
            t.input.value(t.input.max_raw()),
        );
        let wrap = t.input.overflow() == Overflow::Wrap;
        let x = arg.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
        let slope: Vec<f64> = x
            .iter()
            .map(|&x| {
                if wrap || (lo..=hi).contains(&x) {
                    let d = t.function.derivative(t.input.quantize(x));
                    if d.is_finite() {
                        d
                    } else {
                        0.0
                    }
                } else {
                    0.0
                }
            })
            .collect();
        let slope = Tensor::from_vec(slope, arg.shape(), arg.device())?;
        Ok(Some(slope.to_dtype(grad_res.dtype())?.mul(grad_res)?))
    }
}

/// `table` applied to every element of `x` (f64 on the CPU), with the straight-through
/// gradient of its float function.
///
/// # Errors
/// Other dtypes or devices.
pub fn table_lookup(x: &Tensor, table: Table) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op1(Lookup(table))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn ty(spec: &str) -> FixedType {
        spec.parse().unwrap()
    }

    #[test]
    fn entries_are_the_quantised_function_of_every_input_value() {
        let t = Table {
            function: TableFn::Exp { scale: 0.5 },
            input: ty("ap_fixed<6,4,AP_RND_CONV,AP_SAT>"),
            output: ty("ap_ufixed<8,1,AP_RND_CONV,AP_SAT>"),
        };
        let raw = t.raw_entries();
        assert_eq!(raw.len(), 64);
        // Input raw -32 is -8: exp(-4) = 0.0183 -> 2/128; raw 0 is 0: exp(0) = 1 -> 128/128.
        assert_eq!(raw[0], 2);
        assert_eq!(raw[32], 128);
        let x = Tensor::new(&[-8.0f64, 0.1, 0.0, 1.3], &Device::Cpu).unwrap();
        let y = table_lookup(&x, t).unwrap().to_vec1::<f64>().unwrap();
        // 0.1 rounds to 0 (lsb 0.25); 1.3 to 1.25: exp(0.625) = 1.868 -> 239/128.
        assert_eq!(y, [2.0 / 128.0, 1.0, 1.0, 239.0 / 128.0]);
    }

    #[test]
    fn the_gradient_is_the_derivative_at_the_quantised_input_and_zero_when_saturated() {
        let t = Table {
            function: TableFn::Activation {
                act: Activation::Sigmoid,
                scale: 0.5,
            },
            input: ty("ap_fixed<8,3,AP_RND_CONV,AP_SAT>"),
            output: ty("ap_fixed<10,2,AP_RND_CONV,AP_SAT>"),
        };
        let x = Var::new(&[0.5f64, -1.0, 9.0], &Device::Cpu).unwrap();
        let y = table_lookup(x.as_tensor(), t).unwrap();
        let grads = y.sum_all().unwrap().backward().unwrap();
        let g = grads.get(x.as_tensor()).unwrap().to_vec1::<f64>().unwrap();
        let s = |x: f64| sigmoid(0.5 * x);
        assert_eq!(g[0], 0.5 * s(0.5) * (1.0 - s(0.5)));
        assert_eq!(g[1], 0.5 * s(-1.0) * (1.0 - s(-1.0)));
        assert_eq!(g[2], 0.0);
    }

    #[test]
    fn derivatives_match_central_differences() {
        let fns = [
            TableFn::InvRms {
                channels: 5,
                epsilon: 0.01,
            },
            TableFn::Exp { scale: 0.3 },
            TableFn::Recip,
            TableFn::Activation {
                act: Activation::Gelu,
                scale: 1.0,
            },
            TableFn::Activation {
                act: Activation::Silu,
                scale: 2.0,
            },
            TableFn::Activation {
                act: Activation::Tanh,
                scale: 1.0,
            },
        ];
        for f in fns {
            for x in [0.3, 1.7, 4.0] {
                let h = 1e-6;
                let numeric = (f.eval(x + h) - f.eval(x - h)) / (2.0 * h);
                let analytic = f.derivative(x);
                assert!(
                    (numeric - analytic).abs() < 1e-7 * analytic.abs().max(1.0),
                    "{f:?} at {x}: {numeric} vs {analytic}"
                );
            }
        }
    }

    #[test]
    fn a_table_wider_than_sixteen_bits_is_refused_naming_the_stage() {
        let t = Table {
            function: TableFn::Recip,
            input: ty("ap_fixed<20,8>"),
            output: ty("ap_fixed<8,2>"),
        };
        let err = t
            .check("blocks.0.attention.softmax", "table_input")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "layer blocks.0.attention.softmax: table_input ap_fixed<20,8,AP_TRN,AP_WRAP> has \
             20 bits; a table reads at most 16 (2^16 entries)"
        );
    }
}
