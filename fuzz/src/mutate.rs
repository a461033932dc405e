//! Generic byte mutations (AFL's havoc stage, in short) and the interesting values that
//! format-aware mutations write into size fields, numbers and cells.

use rand::RngExt;
use rand_chacha::ChaCha8Rng;

/// Integers that break size arithmetic: zero, one, sign and width boundaries, and
/// "plausible but huge" jet counts.
pub const INTERESTING_U64: [u64; 16] = [
    0,
    1,
    2,
    0x7f,
    0xff,
    0x7fff,
    0xffff,
    0x7fff_ffff,
    0xffff_ffff,
    100_000_000,
    1 << 40,
    0x7fff_ffff_ffff_ffff,
    u64::MAX,
    u64::MAX - 1,
    4096,
    65_536,
];

/// Floats that break numerics.
pub const INTERESTING_F64: [f64; 12] = [
    0.0,
    -0.0,
    1.0,
    -1.0,
    f64::NAN,
    f64::INFINITY,
    f64::NEG_INFINITY,
    f64::MAX,
    f64::MIN_POSITIVE,
    5e-324,
    1e300,
    -1e300,
];

/// One to eight stacked generic mutations of `input`, splicing from `corpus` at times.
pub fn havoc(input: &[u8], corpus: &[Vec<u8>], rng: &mut ChaCha8Rng) -> Vec<u8> {
    let mut data = input.to_vec();
    for _ in 0..rng.random_range(1..=8) {
        mutate_once(&mut data, corpus, rng);
    }
    data
}

fn mutate_once(data: &mut Vec<u8>, corpus: &[Vec<u8>], rng: &mut ChaCha8Rng) {
    if data.is_empty() {
        data.push(rng.random());
        return;
    }
    let at = rng.random_range(0..data.len());
    match rng.random_range(0..10) {
        0 => data[at] ^= 1 << rng.random_range(0..8),
        1 => data[at] = rng.random(),
        2 => {
            let value = INTERESTING_U64[rng.random_range(0..INTERESTING_U64.len())];
            let width = [1, 2, 4, 8][rng.random_range(0..4)];
            overwrite(data, at, &value.to_le_bytes()[..width]);
        }
        3 => {
            // An aligned 8-byte field (HDF5 addresses and lengths are 8-byte LE).
            let at = at & !7;
            let value = INTERESTING_U64[rng.random_range(0..INTERESTING_U64.len())];
            overwrite(data, at, &value.to_le_bytes());
        }
        4 => {
            let value = INTERESTING_F64[rng.random_range(0..INTERESTING_F64.len())];
            if rng.random() {
                overwrite(data, at & !3, &(value as f32).to_le_bytes());
            } else {
                overwrite(data, at & !7, &value.to_le_bytes());
            }
        }
        5 => data.truncate(at),
        6 => {
            let end = (at + rng.random_range(1..=64)).min(data.len());
            data.drain(at..end);
        }
        7 => {
            let end = (at + rng.random_range(1..=64)).min(data.len());
            let copy = data[at..end].to_vec();
            let to = rng.random_range(0..=data.len());
            data.splice(to..to, copy);
        }
        8 => {
            let value = (rng.random::<i8>() as u8).wrapping_add(data[at]);
            data[at] = value;
        }
        _ => {
            if let Some(other) = pick(corpus, rng) {
                if !other.is_empty() {
                    let from = rng.random_range(0..other.len());
                    let end = (from + rng.random_range(1..=256)).min(other.len());
                    overwrite(data, at, &other[from..end]);
                }
            }
        }
    }
}

/// Writes `bytes` at `at`, as far as `data` reaches.
pub fn overwrite(data: &mut [u8], at: usize, bytes: &[u8]) {
    let end = (at + bytes.len()).min(data.len());
    if at < end {
        data[at..end].copy_from_slice(&bytes[..end - at]);
    }
}

/// A random element, if any.
pub fn pick<'a, T>(items: &'a [T], rng: &mut ChaCha8Rng) -> Option<&'a T> {
    (!items.is_empty()).then(|| &items[rng.random_range(0..items.len())])
}

/// A number as text that a config or a table may choke on.
pub fn interesting_number_text(rng: &mut ChaCha8Rng) -> String {
    match rng.random_range(0..4) {
        0 => INTERESTING_U64[rng.random_range(0..INTERESTING_U64.len())].to_string(),
        1 => format!(
            "-{}",
            INTERESTING_U64[rng.random_range(0..INTERESTING_U64.len())]
        ),
        2 => {
            let v = INTERESTING_F64[rng.random_range(0..INTERESTING_F64.len())];
            if v.is_nan() {
                "nan".into()
            } else if v.is_infinite() {
                if v > 0.0 { "inf" } else { "-inf" }.into()
            } else {
                format!("{v:e}")
            }
        }
        _ => [
            "",
            "1e400",
            "-1e400",
            "0x10",
            "1_000",
            "NaN",
            "+inf",
            "1.5.2",
            "--1",
            "9".repeat(40).as_str(),
        ][rng.random_range(0..10)]
        .to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn havoc_is_seeded_and_changes_its_input() {
        let input = vec![7u8; 64];
        let corpus = vec![vec![1u8; 32]];
        let a = havoc(&input, &corpus, &mut ChaCha8Rng::seed_from_u64(3));
        let b = havoc(&input, &corpus, &mut ChaCha8Rng::seed_from_u64(3));
        assert_eq!(a, b);
        let changed = (0..50)
            .filter(|&s| havoc(&input, &corpus, &mut ChaCha8Rng::seed_from_u64(s)) != input)
            .count();
        assert!(changed > 40, "{changed}");
    }
}
