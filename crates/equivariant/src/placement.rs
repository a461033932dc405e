//! Where a model runs and in which precision: the one place that turns the `device`,
//! `dtype` and `threads` settings into candle's [`Device`] and [`DType`].
//!
//! ```
//! use noether_equivariant::{DeviceSetting, Placement, Precision};
//!
//! let place = Placement::new("cpu".parse::<DeviceSetting>()?, Precision::F64)?;
//! assert!(place.device.is_cpu());
//! // A device whose cargo feature is not built fails at once, naming the feature.
//! let cuda = Placement::new("cuda:0".parse()?, Precision::F32);
//! # #[cfg(not(feature = "cuda"))]
//! assert!(cuda.unwrap_err().to_string().contains("feature"));
//! # Ok::<(), noether_equivariant::ModelError>(())
//! ```

use std::fmt;
use std::str::FromStr;

use candle_core::{DType, Device};
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// A device as a setting: `cpu`, `cuda:N` (also `cuda`, meaning `cuda:0`) or `metal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DeviceSetting {
    /// The CPU (candle's kernels, threaded with [`set_threads`]).
    #[default]
    Cpu,
    /// CUDA GPU number N (cargo feature `cuda`).
    Cuda(usize),
    /// Apple's Metal GPU (cargo feature `metal`).
    Metal,
}

impl fmt::Display for DeviceSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
            Self::Metal => f.write_str("metal"),
        }
    }
}

impl FromStr for DeviceSetting {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self> {
        let bad = |reason: &str| ModelError::BadDevice {
            device: s.to_owned(),
            reason: reason.to_owned(),
        };
        match s.trim() {
            "cpu" => Ok(Self::Cpu),
            "metal" => Ok(Self::Metal),
            "cuda" => Ok(Self::Cuda(0)),
            other => {
                let ordinal = other
                    .strip_prefix("cuda:")
                    .ok_or_else(|| bad("expected cpu, cuda:N or metal"))?;
                ordinal
                    .parse()
                    .map(Self::Cuda)
                    .map_err(|_| bad("the CUDA ordinal N in cuda:N must be a number"))
            }
        }
    }
}

impl Serialize for DeviceSetting {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DeviceSetting {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl DeviceSetting {
    /// The candle device. A GPU whose cargo feature this build lacks is an error that
    /// names the feature, before any work is done.
    ///
    /// # Errors
    /// [`ModelError::BadDevice`]: feature not built, or the device cannot be opened.
    pub fn device(self) -> Result<Device> {
        let open_failed = |e: candle_core::Error| ModelError::BadDevice {
            device: self.to_string(),
            reason: e.to_string(),
        };
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Cuda(n) => {
                if !cfg!(feature = "cuda") {
                    return Err(self.feature_missing("cuda"));
                }
                Device::new_cuda(n).map_err(open_failed)
            }
            Self::Metal => {
                if !cfg!(feature = "metal") {
                    return Err(self.feature_missing("metal"));
                }
                Device::new_metal(0).map_err(open_failed)
            }
        }
    }

    fn feature_missing(self, feature: &str) -> ModelError {
        ModelError::BadDevice {
            device: self.to_string(),
            reason: format!(
                "this build of noether has no {feature} support: rebuild with the cargo \
                 feature `{feature}` (cargo build --release --features {feature})"
            ),
        }
    }
}

/// The floating-point type of a model's weights, inputs and activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Single precision (training and inference).
    #[default]
    F32,
    /// Double precision (invariance studies, finite-difference checks).
    F64,
}

impl Precision {
    /// candle's dtype.
    pub fn dtype(self) -> DType {
        match self {
            Self::F32 => DType::F32,
            Self::F64 => DType::F64,
        }
    }
}

/// A resolved device and dtype: every tensor of a model, its inputs and its checkpoint
/// loads are created with these.
#[derive(Debug, Clone)]
pub struct Placement {
    /// Where tensors live.
    pub device: Device,
    /// Their float type.
    pub dtype: DType,
}

impl Placement {
    /// Opens the device of `device` (see [`DeviceSetting::device`]).
    ///
    /// # Errors
    /// As [`DeviceSetting::device`].
    pub fn new(device: DeviceSetting, precision: Precision) -> Result<Self> {
        Ok(Self {
            device: device.device()?,
            dtype: precision.dtype(),
        })
    }

    /// f32 on the CPU: the default of every run.
    pub fn cpu() -> Self {
        Self {
            device: Device::Cpu,
            dtype: DType::F32,
        }
    }
}

impl Default for Placement {
    fn default() -> Self {
        Self::cpu()
    }
}

/// The CPU threads a command runs on: what it asked for, and what it got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Threads {
    /// The setting (`--threads`, `train.threads`); 0 means all cores.
    pub requested: usize,
    /// The threads used: all cores for 0, otherwise the request bounded by the cores
    /// (more threads than cores only adds contention: `--threads 1000` crawled).
    pub used: usize,
}

impl Threads {
    /// The message to show when the request was cut down to the machine.
    pub fn capped(&self) -> Option<String> {
        (self.requested > self.used).then(|| {
            format!(
                "threads = {} exceeds the {} cores of this machine; using {}",
                self.requested, self.used, self.used
            )
        })
    }
}

/// The CPU threads that `threads` asks for: 0 means all cores (as `torch`'s default and
/// every noether command's `--threads 0`), otherwise `threads` bounded by the cores.
pub fn resolve_threads(threads: usize) -> Threads {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    Threads {
        requested: threads,
        used: if threads == 0 {
            cores
        } else {
            threads.min(cores)
        },
    }
}

/// Sets the number of CPU threads candle uses (`CANDLE_NUM_THREADS`, and
/// `RAYON_NUM_THREADS`, which candle's matmul otherwise derives by reading
/// `/proc/cpuinfo` on every call: measured 21 -> 15 ms per LorentzNet jet), as
/// [`resolve_threads`] bounds them. Call it before the first tensor operation: candle
/// sizes its pool once. Returns what was set.
pub fn set_threads(threads: usize) -> Threads {
    let threads = resolve_threads(threads);
    std::env::set_var("CANDLE_NUM_THREADS", threads.used.to_string());
    std::env::set_var("RAYON_NUM_THREADS", threads.used.to_string());
    threads
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_settings_parse_and_print_round_trip() {
        for text in ["cpu", "cuda:0", "cuda:3", "metal"] {
            let d: DeviceSetting = text.parse().unwrap();
            assert_eq!(d.to_string(), text);
        }
        assert_eq!(
            "cuda".parse::<DeviceSetting>().unwrap(),
            DeviceSetting::Cuda(0)
        );
        for bad in ["gpu", "cuda:x", "cuda:-1", ""] {
            let e = bad.parse::<DeviceSetting>().unwrap_err().to_string();
            assert!(e.contains(&format!("'{bad}'")), "{e}");
        }
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_names_the_feature() {
        let e = DeviceSetting::Cuda(0).device().unwrap_err().to_string();
        assert!(e.contains("cuda") && e.contains("feature"), "{e}");
    }

    #[test]
    fn zero_threads_means_every_core_and_requests_are_bounded_by_them() {
        let cores = std::thread::available_parallelism().unwrap().get();
        assert_eq!(resolve_threads(0).used, cores);
        assert_eq!(resolve_threads(0).capped(), None);
        assert_eq!(resolve_threads(1).used, 1);
        let many = resolve_threads(1000);
        assert_eq!((many.requested, many.used), (1000, cores.min(1000)));
        let message = many.capped().unwrap();
        assert!(
            message.contains("1000") && message.contains(&format!("{cores} cores")),
            "{message}"
        );
    }
}
