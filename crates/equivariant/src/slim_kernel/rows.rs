//! Matrices written row by row in parallel without zero-filling them first.
//!
//! Every layer of the kernel writes its outputs into fresh buffers; `vec![0; n]` filled
//! each before the layer overwrote it (2.4% of a one-thread training step in `memset`,
//! `perf`). [`par_rows`] hands each task a [`Row`] of uninitialised slots that can only be
//! written whole ([`Row::fill`], [`Row::fill_groups`], [`Row::fill_runs`]), and takes back the [`Written`]
//! proof that only filling that row yields: the matrix is complete once every task has
//! returned.

// The workspace denies unsafe code; this file's one `set_len` is the exception, sound
// because of the proofs above (see its SAFETY comment).
#![allow(unsafe_code)]

use std::marker::PhantomData;
use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::linear::min_rows;

/// Row `index` of a matrix under construction: `len` slots to write, all at once.
pub(super) struct Row<'a, T> {
    slots: &'a mut [MaybeUninit<T>],
    index: usize,
}

/// The proof that a [`Row`] of lifetime `'a` was written whole. The lifetime is invariant,
/// so a proof answers for its own row only.
pub(super) struct Written<'a>(PhantomData<fn(&'a ()) -> &'a ()>);

impl<'a, T> Row<'a, T> {
    /// The row's index in the matrix.
    pub(super) fn index(&self) -> usize {
        self.index
    }

    /// Writes `values` in order.
    ///
    /// # Panics
    /// When `values` holds fewer values than the row: a bug in the caller.
    pub(super) fn fill(self, values: impl IntoIterator<Item = T>) -> Written<'a> {
        let len = self.slots.len();
        let mut written = 0;
        for (slot, value) in self.slots.iter_mut().zip(values) {
            slot.write(value);
            written += 1;
        }
        assert_eq!(written, len, "a row written short");
        Written(PhantomData)
    }

    /// Writes the values of each group of `G` (a token's four vector components), group
    /// `k` as `group(k)`.
    ///
    /// # Panics
    /// When the row's length is not a multiple of `G`: a bug in the caller.
    pub(super) fn fill_groups<const G: usize>(
        self,
        mut group: impl FnMut(usize) -> [T; G],
    ) -> Written<'a> {
        assert_eq!(self.slots.len() % G, 0, "a row of whole groups");
        for (k, slots) in self.slots.chunks_exact_mut(G).enumerate() {
            for (slot, value) in slots.iter_mut().zip(group(k)) {
                slot.write(value);
            }
        }
        Written(PhantomData)
    }

    /// Writes the row front to back in runs through a [`Cursor`] (a row gathered from
    /// pieces: every jet's part of a merged head).
    ///
    /// # Panics
    /// When the runs do not reach the row's end or overrun it: a bug in the caller.
    pub(super) fn fill_runs(self, runs: impl FnOnce(&mut Cursor<'_, T>)) -> Written<'a> {
        let len = self.slots.len();
        let mut cursor = Cursor {
            slots: self.slots,
            at: 0,
        };
        runs(&mut cursor);
        assert_eq!(cursor.at, len, "a row written short");
        Written(PhantomData)
    }
}

/// Writes a [`Row`] front to back: every slot before `at` is written.
pub(super) struct Cursor<'s, T> {
    slots: &'s mut [MaybeUninit<T>],
    at: usize,
}

impl<T: Copy> Cursor<'_, T> {
    /// Appends `values`.
    ///
    /// # Panics
    /// Past the row's end.
    pub(super) fn push_slice(&mut self, values: &[T]) {
        let slots = &mut self.slots[self.at..][..values.len()];
        for (slot, &value) in slots.iter_mut().zip(values) {
            slot.write(value);
        }
        self.at += values.len();
    }

    /// Appends `count` copies of `value`.
    ///
    /// # Panics
    /// Past the row's end.
    pub(super) fn push_repeated(&mut self, value: T, count: usize) {
        for slot in &mut self.slots[self.at..][..count] {
            slot.write(value);
        }
        self.at += count;
    }

    /// Appends the four equally long `rows` interleaved: `rows[0][0], rows[1][0], rows[2][0],
    /// rows[3][0], rows[0][1], ...` (a vector channel's components, token-major).
    ///
    /// # Panics
    /// Past the row's end.
    pub(super) fn push_interleaved(&mut self, rows: [&[T]; 4]) {
        let [a, b, c, d] = rows;
        let len = a.len();
        // The cursor moves by what the loop writes only if no row is shorter.
        assert!(
            b.len() == len && c.len() == len && d.len() == len,
            "rows of one length"
        );
        let slots = &mut self.slots[self.at..][..4 * len];
        for (slots, (((&a, &b), &c), &d)) in
            slots.chunks_exact_mut(4).zip(a.iter().zip(b).zip(c).zip(d))
        {
            slots[0].write(a);
            slots[1].write(b);
            slots[2].write(c);
            slots[3].write(d);
        }
        self.at += 4 * len;
    }
}

/// A row-major `[rows, width]` matrix whose rows `write` fills, in parallel (tasks of
/// [`min_rows`] rows at least).
pub(super) fn par_rows<T: Send>(
    rows: usize,
    width: usize,
    write: impl for<'a> Fn(Row<'a, T>) -> Written<'a> + Sync + Send,
) -> Vec<T> {
    if rows == 0 || width == 0 {
        return Vec::new();
    }
    let len = rows * width;
    let mut out: Vec<T> = Vec::with_capacity(len);
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(width)
        .with_min_len(min_rows(width))
        .enumerate()
        .for_each(|(index, slots)| {
            let _: Written<'_> = write(Row { slots, index });
        });
    // SAFETY: the capacity holds `len` slots; each of the `rows` chunks of `width` was
    // handed to `write` as a `Row`, whose `Written` proof only `fill`, `fill_groups` or
    // `fill_runs` on that row returns, each after writing every slot of it (`fill_runs`
    // through a cursor that writes front to back and reached the end). A panic inside
    // would have left this function before here.
    unsafe { out.set_len(len) };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_hold_what_each_task_wrote() {
        let m: Vec<f64> = par_rows(5, 8, |row| {
            let r = row.index() as f64;
            if row.index() == 4 {
                let values: Vec<f64> = (0..3).map(|c| 10.0 * r + f64::from(c)).collect();
                row.fill_runs(|cursor| {
                    cursor.push_slice(&values[..2]);
                    cursor.push_repeated(values[2], 1);
                    let rest: Vec<f64> = (3..8).map(|c| 10.0 * r + f64::from(c)).collect();
                    cursor.push_interleaved([&rest[..1], &rest[1..2], &rest[2..3], &rest[3..4]]);
                    cursor.push_slice(&rest[4..]);
                })
            } else if row.index() % 2 == 0 {
                row.fill((0..8).map(|c| 10.0 * r + f64::from(c)))
            } else {
                row.fill_groups::<4>(|k| std::array::from_fn(|i| 10.0 * r + (4 * k + i) as f64))
            }
        });
        let expected: Vec<f64> = (0..5)
            .flat_map(|r| (0..8).map(move |c| f64::from(10 * r + c)))
            .collect();
        assert_eq!(m, expected);
        assert!(par_rows::<f32>(0, 3, |row| row.fill([])).is_empty());
    }

    #[test]
    #[should_panic(expected = "a row written short")]
    fn a_short_row_is_refused() {
        let _ = par_rows::<f32>(2, 4, |row| row.fill([1.0, 2.0]));
    }

    #[test]
    #[should_panic(expected = "rows of one length")]
    fn interleaving_rows_of_unequal_length_is_refused() {
        let _ = par_rows::<f32>(1, 8, |row| {
            row.fill_runs(|cursor| {
                cursor.push_interleaved([&[1.0; 2], &[1.0; 2], &[1.0; 2], &[1.0]]);
            })
        });
    }

    #[test]
    #[should_panic(expected = "a row written short")]
    fn runs_short_of_the_row_are_refused() {
        let _ = par_rows::<f32>(2, 4, |row| {
            row.fill_runs(|cursor| cursor.push_slice(&[1.0; 3]))
        });
    }
}
