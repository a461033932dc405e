//! Padded batches for the models: `momenta` (batch, n, 4), `mask` (batch, n), labels and
//! weights, with optional beam particles prepended (the LorentzNet / PELICAN
//! convention) and truncation to the `n_max` leading (highest-pT) constituents.
//!
//! [`batches`] iterates over jets in memory; [`StreamingBatches`] reads files of any
//! size in a background thread with bounded memory and a shuffle buffer.

use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver};
use std::thread::JoinHandle;

use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::error::{DataError, Result};
use crate::file::JetFile;
use crate::jets::JetSet;

/// Beam "spurion" particles prepended to every jet.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Beams {
    /// No beams.
    #[default]
    None,
    /// Beam (or other reference) four-vectors placed before the constituents (mask 1):
    /// two for LorentzNet and PELICAN, the two beams and a time reference for L-GATr.
    Prepend(&'static [[f32; 4]]),
}

impl Beams {
    /// LorentzNet's beams (sqrt(2), 0, 0, +-1), as its reference code builds them.
    pub const LORENTZNET: Self = Self::Prepend(&[
        [std::f32::consts::SQRT_2, 0.0, 0.0, 1.0],
        [std::f32::consts::SQRT_2, 0.0, 0.0, -1.0],
    ]);
    /// PELICAN's light-like beams (1, 0, 0, +-1).
    pub const PELICAN: Self = Self::Prepend(&[[1.0, 0.0, 0.0, 1.0], [1.0, 0.0, 0.0, -1.0]]);

    /// Number of beam particles.
    pub const fn count(&self) -> usize {
        match self {
            Self::None => 0,
            Self::Prepend(beams) => beams.len(),
        }
    }
}

/// How batches are formed.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchConfig {
    /// Jets per batch.
    pub batch_size: usize,
    /// Constituents kept per jet (the leading ones); shorter jets are zero-padded.
    pub n_max: usize,
    /// Beam particles prepended (not counted in `n_max`).
    pub beams: Beams,
    /// Shuffle the order each epoch.
    pub shuffle: bool,
    /// Drop a last, incomplete batch.
    pub drop_last: bool,
    /// Seed of the shuffles.
    pub seed: u64,
    /// Per-class weights (background, signal) written into `Batch::weights`; `None`
    /// gives weight 1.
    pub class_weights: Option<[f32; 2]>,
}

impl BatchConfig {
    /// `batch_size` jets of at most `n_max` constituents, no beams, shuffled, seed 0.
    pub fn new(batch_size: usize, n_max: usize) -> Self {
        Self {
            batch_size,
            n_max,
            beams: Beams::None,
            shuffle: true,
            drop_last: false,
            seed: 0,
            class_weights: None,
        }
    }

    fn validate(&self) -> Result<()> {
        for (name, value) in [("batch_size", self.batch_size), ("n_max", self.n_max)] {
            if value == 0 {
                return Err(DataError::InvalidArgument {
                    name,
                    detail: "must be at least 1".into(),
                });
            }
        }
        Ok(())
    }

    /// Particles per padded jet: beams + `n_max`.
    pub fn particles(&self) -> usize {
        self.beams.count() + self.n_max
    }
}

/// A padded batch. Tensors are flat, row-major, f32.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Four-momenta (E, px, py, pz), shape `[batch, particles, 4]`, zero-padded.
    pub momenta: Vec<f32>,
    /// 1 for real particles (beams included), 0 for padding, shape `[batch, particles]`.
    pub mask: Vec<f32>,
    /// Labels, shape `[batch]`.
    pub labels: Vec<u8>,
    /// Sample weights, shape `[batch]`.
    pub weights: Vec<f32>,
    /// Position of each jet in its source: the index into the [`JetSet`] for [`batches`],
    /// the jet's index in its file for streaming batches. Shape `[batch]`.
    pub indices: Vec<usize>,
    /// Jets in this batch.
    pub batch_size: usize,
    /// Particles per jet (beams + n_max).
    pub particles: usize,
}

impl Batch {
    fn with_capacity(config: &BatchConfig) -> Self {
        let p = config.particles();
        Self {
            momenta: Vec::with_capacity(config.batch_size * p * 4),
            mask: Vec::with_capacity(config.batch_size * p),
            labels: Vec::with_capacity(config.batch_size),
            weights: Vec::with_capacity(config.batch_size),
            indices: Vec::with_capacity(config.batch_size),
            batch_size: 0,
            particles: p,
        }
    }

    /// Appends one jet, truncated to `n_max` and padded.
    fn push(&mut self, constituents: &[[f32; 4]], label: u8, index: usize, config: &BatchConfig) {
        if let Beams::Prepend(beams) = config.beams {
            for b in beams {
                self.momenta.extend_from_slice(b);
                self.mask.push(1.0);
            }
        }
        let kept = &constituents[..constituents.len().min(config.n_max)];
        for c in kept {
            self.momenta.extend_from_slice(c);
        }
        self.mask.extend(std::iter::repeat_n(1.0, kept.len()));
        let pad = config.n_max - kept.len();
        self.momenta.extend(std::iter::repeat_n(0.0, 4 * pad));
        self.mask.extend(std::iter::repeat_n(0.0, pad));
        self.labels.push(label);
        self.indices.push(index);
        self.weights
            .push(config.class_weights.map_or(1.0, |w| w[usize::from(label)]));
        self.batch_size += 1;
    }
}

/// The batches of one epoch over `jets[indices]` (shuffled with `seed + epoch` when
/// configured).
///
/// # Errors
/// `batch_size` or `n_max` of 0.
pub fn batches<'a>(
    jets: &'a JetSet,
    indices: &[usize],
    config: &'a BatchConfig,
    epoch: u64,
) -> Result<impl Iterator<Item = Batch> + 'a> {
    config.validate()?;
    let mut order = indices.to_vec();
    if config.shuffle {
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(
            config.seed.wrapping_add(epoch),
        ));
    }
    let chunks: Vec<Vec<usize>> = order
        .chunks(config.batch_size)
        .filter(|c| !config.drop_last || c.len() == config.batch_size)
        .map(<[usize]>::to_vec)
        .collect();
    Ok(chunks.into_iter().map(move |chunk| {
        let mut batch = Batch::with_capacity(config);
        for i in chunk {
            batch.push(jets.constituents(i), jets.label(i), i, config);
        }
        batch
    }))
}

/// Settings of [`StreamingBatches`].
#[derive(Debug, Clone, PartialEq)]
pub struct StreamConfig {
    /// Batch formation (its `shuffle` and `seed` drive the shuffle buffer).
    pub batch: BatchConfig,
    /// Jets held in the shuffle buffer (0 or 1: no shuffling across windows).
    pub shuffle_buffer: usize,
    /// Jets read from the file per window.
    pub window: usize,
    /// Batches decoded ahead of the consumer (the channel bound).
    pub prefetch: usize,
    /// Windows decoded in parallel (0: one per core, rayon's default).
    pub threads: usize,
}

impl StreamConfig {
    /// Streaming with a 10,000-jet shuffle buffer, 1,000-jet windows, 4 batches ahead.
    pub fn new(batch: BatchConfig) -> Self {
        Self {
            batch,
            shuffle_buffer: 10_000,
            window: 1_000,
            prefetch: 4,
            threads: 0,
        }
    }
}

/// Batches streamed from one or more files by a background thread: memory is bounded by
/// the windows in flight, the shuffle buffer and `prefetch` batches, whatever the file
/// size. The thread decodes as many windows at once as rayon has threads (one file
/// handle each; gzip inflation is the cost), then hands jets on in file order; with
/// shuffling, jets pass through a seeded shuffle buffer, so the order is deterministic
/// for a seed and independent of the thread count.
pub struct StreamingBatches {
    receiver: Receiver<Result<Batch>>,
    worker: Option<JoinHandle<()>>,
}

impl StreamingBatches {
    /// Opens every file (so that a bad path fails here, not in the thread) and starts
    /// the reader thread.
    ///
    /// # Errors
    /// Any file that cannot be opened; an invalid configuration.
    pub fn new(paths: &[PathBuf], config: StreamConfig) -> Result<Self> {
        config.batch.validate()?;
        if config.window == 0 {
            return Err(DataError::InvalidArgument {
                name: "window",
                detail: "must be at least 1".into(),
            });
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(config.threads)
            .build()
            .map_err(|e| DataError::InvalidArgument {
                name: "threads",
                detail: e.to_string(),
            })?;
        let threads = pool.current_num_threads();
        let files = paths
            .iter()
            .map(|p| {
                (0..threads)
                    .map(|_| JetFile::open(p))
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        let (sender, receiver) = sync_channel(config.prefetch.max(1));
        let worker = std::thread::spawn(move || {
            let mut producer = Producer::new(config);
            let result = files.into_iter().try_for_each(|mut handles| {
                pool.install(|| producer.read_file(&mut handles, &sender))
            });
            match result {
                Ok(()) => producer.drain(&sender),
                Err(e) => {
                    let _ = sender.send(Err(e));
                }
            }
        });
        Ok(Self {
            receiver,
            worker: Some(worker),
        })
    }
}

impl Iterator for StreamingBatches {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Self::Item> {
        let item = self.receiver.recv().ok();
        if item.is_none() {
            if let Some(worker) = self.worker.take() {
                let _ = worker.join();
            }
        }
        item
    }
}

/// The background side: shuffle buffer and batch assembly.
struct Producer {
    config: StreamConfig,
    rng: ChaCha8Rng,
    buffer: Vec<StreamedJet>,
    batch: Batch,
}

/// Constituents, label and index in the file of a jet in the shuffle buffer.
type StreamedJet = (Vec<[f32; 4]>, u8, usize);

/// The consumer went away: stop quietly.
struct Disconnected;

impl Producer {
    fn new(config: StreamConfig) -> Self {
        let batch = Batch::with_capacity(&config.batch);
        Self {
            rng: ChaCha8Rng::seed_from_u64(config.batch.seed),
            config,
            buffer: Vec::new(),
            batch,
        }
    }

    fn shuffling(&self) -> bool {
        self.config.batch.shuffle && self.config.shuffle_buffer > 1
    }

    /// Reads one file through `handles` (one per decoding thread), a group of windows
    /// at a time, emitting jets in file order.
    fn read_file(
        &mut self,
        handles: &mut [JetFile],
        out: &std::sync::mpsc::SyncSender<Result<Batch>>,
    ) -> Result<()> {
        let (len, window) = (handles[0].len(), self.config.window);
        let mut start = 0;
        while start < len {
            let windows: Vec<Result<JetSet>> = handles
                .par_iter_mut()
                .enumerate()
                .map(|(k, h)| h.read(start + k * window, window).map(|(jets, _)| jets))
                .collect();
            for (k, jets) in windows.into_iter().enumerate() {
                if self.emit_window(&jets?, start + k * window, out).is_err() {
                    return Ok(());
                }
            }
            start += handles.len() * window;
        }
        Ok(())
    }

    fn emit_window(
        &mut self,
        jets: &JetSet,
        first: usize,
        out: &std::sync::mpsc::SyncSender<Result<Batch>>,
    ) -> std::result::Result<(), Disconnected> {
        for i in 0..jets.len() {
            let jet = (jets.constituents(i).to_vec(), jets.label(i), first + i);
            if self.shuffling() {
                self.buffer.push(jet);
                if self.buffer.len() >= self.config.shuffle_buffer {
                    let pick = self.rng.random_range(0..self.buffer.len());
                    let jet = self.buffer.swap_remove(pick);
                    self.emit(&jet, out)?;
                }
            } else {
                self.emit(&jet, out)?;
            }
        }
        Ok(())
    }

    fn emit(
        &mut self,
        jet: &StreamedJet,
        out: &std::sync::mpsc::SyncSender<Result<Batch>>,
    ) -> std::result::Result<(), Disconnected> {
        self.batch.push(&jet.0, jet.1, jet.2, &self.config.batch);
        if self.batch.batch_size == self.config.batch.batch_size {
            let full = std::mem::replace(&mut self.batch, Batch::with_capacity(&self.config.batch));
            out.send(Ok(full)).map_err(|_| Disconnected)?;
        }
        Ok(())
    }

    /// Emits the jets left in the shuffle buffer and the last partial batch.
    fn drain(&mut self, out: &std::sync::mpsc::SyncSender<Result<Batch>>) {
        let mut rest = std::mem::take(&mut self.buffer);
        rest.shuffle(&mut self.rng);
        for jet in &rest {
            if self.emit(jet, out).is_err() {
                return;
            }
        }
        if self.batch.batch_size > 0 && !self.config.batch.drop_last {
            let last = std::mem::replace(&mut self.batch, Batch::with_capacity(&self.config.batch));
            let _ = out.send(Ok(last));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::JetSetBuilder;

    fn jets() -> JetSet {
        let mut b = JetSetBuilder::default();
        b.push(
            &[
                [3.0, 3.0, 0.0, 0.0],
                [2.0, 2.0, 0.0, 0.0],
                [1.0, 1.0, 0.0, 0.0],
            ],
            1,
            None,
        );
        b.push(&[[5.0, 0.0, 5.0, 0.0]], 0, None);
        b.finish()
    }

    #[test]
    fn padding_truncation_beams_and_mask() {
        let mut config = BatchConfig::new(2, 2);
        config.shuffle = false;
        config.beams = Beams::LORENTZNET;
        config.class_weights = Some([0.5, 2.0]);
        let set = jets();
        let batch: Vec<Batch> = batches(&set, &[0, 1], &config, 0).unwrap().collect();
        let b = &batch[0];
        assert_eq!((b.batch_size, b.particles), (2, 4));
        assert_eq!(b.mask, vec![1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0]);
        // Jet 0: beams, then its two leading constituents (the third is truncated).
        assert_eq!(&b.momenta[8..16], &[3.0, 3.0, 0.0, 0.0, 2.0, 2.0, 0.0, 0.0]);
        assert_eq!(b.momenta[0], std::f32::consts::SQRT_2);
        // Jet 1: beams, its constituent, zero padding.
        assert_eq!(
            &b.momenta[24..32],
            &[5.0, 0.0, 5.0, 0.0, 0.0, 0.0, 0.0, 0.0]
        );
        assert_eq!(b.labels, vec![1, 0]);
        assert_eq!(b.weights, vec![2.0, 0.5]);
    }

    #[test]
    fn any_number_of_beams_is_prepended_in_order() {
        const THREE: [[f32; 4]; 3] = [
            [1.0, 0.0, 0.0, 1.0],
            [1.0, 0.0, 0.0, -1.0],
            [1.0, 0.0, 0.0, 0.0],
        ];
        let mut config = BatchConfig::new(1, 1);
        config.shuffle = false;
        config.beams = Beams::Prepend(&THREE);
        assert_eq!(config.beams.count(), 3);
        let set = jets();
        let b = batches(&set, &[1], &config, 0).unwrap().next().unwrap();
        assert_eq!(b.particles, 4);
        assert_eq!(b.mask, vec![1.0; 4]);
        let flat: Vec<f32> = THREE.iter().flatten().copied().collect();
        assert_eq!(&b.momenta[..12], &flat[..]);
        assert_eq!(&b.momenta[12..], &[5.0, 0.0, 5.0, 0.0]);
    }

    #[test]
    fn zero_sizes_are_rejected() {
        let set = jets();
        let config = BatchConfig::new(0, 10);
        assert!(batches(&set, &[0], &config, 0).is_err());
    }
}
