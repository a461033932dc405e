//! `fused::gelu_tanh`: the forward equals candle's `Tensor::gelu` bit for bit (f32 and
//! f64, contiguous or not), the backward equals central finite differences of that
//! forward in f64, and candle's own backward (whose constants are rounded to six digits)
//! to its precision.

use candle_core::{DType, Device, Tensor, Var};
use noether_equivariant::fused::gelu_tanh;

fn values() -> Vec<f64> {
    (0..4001).map(|k| -8.0 + 0.004 * f64::from(k)).collect()
}

fn host(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

#[test]
fn forward_is_candles_gelu_bit_for_bit() {
    for dtype in [DType::F32, DType::F64] {
        let x = Tensor::from_vec(values(), (4001, 1), &Device::Cpu)
            .unwrap()
            .to_dtype(dtype)
            .unwrap();
        assert_eq!(host(&gelu_tanh(&x).unwrap()), host(&x.gelu().unwrap()));
        // A transposed (non-contiguous) view.
        let m = x
            .reshape((1, 4001))
            .unwrap()
            .broadcast_as((3, 4001))
            .unwrap()
            .t()
            .unwrap();
        assert_eq!(host(&gelu_tanh(&m).unwrap()), host(&m.gelu().unwrap()));
    }
}

#[test]
fn backward_is_the_exact_derivative() {
    let x = Var::from_vec(values(), 4001, &Device::Cpu).unwrap();
    let weights = Tensor::from_vec(
        (0..4001)
            .map(|k| 1.0 + f64::from(k % 7))
            .collect::<Vec<_>>(),
        4001,
        &Device::Cpu,
    )
    .unwrap();
    let grad_of = |y: Tensor| {
        let grads = (y * &weights)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        host(grads.get(x.as_tensor()).unwrap())
    };
    let ours = grad_of(gelu_tanh(x.as_tensor()).unwrap());
    let candles = grad_of(x.as_tensor().gelu().unwrap());
    let h = 1e-6;
    let w = host(&weights);
    for (k, v) in values().into_iter().enumerate() {
        let f = |v: f64| {
            let t = Tensor::new(&[v], &Device::Cpu).unwrap();
            host(&t.gelu().unwrap())[0]
        };
        let central = w[k] * (f(v + h) - f(v - h)) / (2.0 * h);
        assert!(
            (ours[k] - central).abs() < 1e-8 * w[k],
            "x = {v}: {} vs {central}",
            ours[k]
        );
        assert!(
            (ours[k] - candles[k]).abs() < 1e-5 * w[k],
            "x = {v}: candle {}",
            candles[k]
        );
    }
}
