//! L-GATr-slim's token stage in the integer engine: its class-token logits are exactly
//! invariant under any permutation of the other tokens and under padding inserted
//! anywhere (attention sums over real keys in exact integers), and bad token inputs are
//! refused naming the input.

mod common;

use common::{slim, tokens};
use noether_quant::{Engine, QuantError, MAX_TOKENS};
use proptest::prelude::*;

const WIDTH: usize = 12;

fn logits(engine: &mut Engine, features: &[f32], mask: &[f32]) -> Vec<f64> {
    engine.run(features, mask).unwrap().to_vec()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn permutations_and_padding_leave_the_logits_exactly_unchanged(
        n in 2usize..20,
        seed in any::<u64>(),
        pads in proptest::collection::vec(0usize..20, 0..6),
    ) {
        let mut engine = Engine::new(&slim()).unwrap();
        let (features, mask) = tokens(n);
        let want = logits(&mut engine, &features, &mask);
        // A seeded shuffle of rows 1..n (the class token stays first).
        let mut order: Vec<usize> = (1..n).collect();
        let mut state = seed | 1;
        for i in (1..order.len()).rev() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            order.swap(i, (state % (i as u64 + 1)) as usize);
        }
        let mut rows: Vec<(Vec<f32>, f32)> = std::iter::once(0)
            .chain(order)
            .map(|r| (features[r * WIDTH..(r + 1) * WIDTH].to_vec(), 1.0))
            .collect();
        // Padded rows (garbage values, mask 0) after the class token.
        for (k, &at) in pads.iter().enumerate() {
            let garbage: Vec<f32> = (0..WIDTH).map(|c| (k * 31 + c) as f32 * 7.5 - 40.0).collect();
            rows.insert(1 + at.min(rows.len() - 1), (garbage, 0.0));
        }
        let shuffled: Vec<f32> = rows.iter().flat_map(|(r, _)| r.iter().copied()).collect();
        let shuffled_mask: Vec<f32> = rows.iter().map(|(_, m)| *m).collect();
        prop_assert_eq!(logits(&mut engine, &shuffled, &shuffled_mask), want);
    }
}

#[test]
fn bad_token_inputs_are_refused_naming_the_input() {
    let mut engine = Engine::new(&slim()).unwrap();
    let (features, mut mask) = tokens(5);
    let message = |e: QuantError| e.to_string();
    mask[0] = 0.0;
    let err = message(engine.run(&features, &mask).unwrap_err());
    assert_eq!(
        err,
        "input mask: the class token (row 0) is missing or masked"
    );
    let (features, mask) = tokens(5);
    let err = message(engine.run(&features[..50], &mask).unwrap_err());
    assert_eq!(err, "input features: 50 values for 5 rows of 12");
    let (features, mask) = tokens(MAX_TOKENS + 1);
    let err = message(engine.run(&features, &mask).unwrap_err());
    assert_eq!(
        err,
        "input mask: 257 real tokens, more than the 256 the engine takes"
    );
    let (mut features, mask) = tokens(5);
    features[13] = f32::NAN;
    let err = message(engine.run(&features, &mask).unwrap_err());
    assert_eq!(err, "input features: value 13 is NaN");
}
