//! A run's memory needs against what the machine has, checked before anything is
//! allocated: an allocation that fails aborts the process ("memory allocation of N bytes
//! failed") with nothing named, so a batch that cannot fit is refused up front.

use noether_equivariant::{DeviceSetting, Precision};

use crate::config::TrainConfig;
use crate::error::{invalid, Result};

/// Refuses a config whose largest activation tensor alone (for a training batch or an
/// evaluation batch, each no larger than the `train_jets` / `eval_jets` it batches)
/// exceeds the memory this machine has available. Only CPU runs are checked: a GPU's
/// memory is its own.
///
/// # Errors
/// [`crate::TrainError::InvalidConfig`] naming `data.batch_size` or
/// `train.eval_batch_size`.
pub fn check_memory(config: &TrainConfig, train_jets: usize, eval_jets: usize) -> Result<()> {
    if config.train.device != DeviceSetting::Cpu {
        return Ok(());
    }
    let Some(available) = available_bytes() else {
        return Ok(());
    };
    let bytes_per_element: u128 = match config.train.dtype {
        Precision::F32 => 4,
        Precision::F64 => 8,
    };
    for (key, batch, jets) in [
        ("data.batch_size", config.data.batch_size, train_jets),
        (
            "train.eval_batch_size",
            config.train.eval_batch_size,
            eval_jets,
        ),
    ] {
        let needed = config
            .model
            .activation_elements(batch.min(jets), config.data.n_max)
            * bytes_per_element;
        if needed > u128::from(available) {
            return Err(invalid(
                key,
                batch,
                &format!(
                    "a batch of {batch} jets of up to {} constituents needs {} for one \
                     activation tensor of {}, more than the {} this machine has available",
                    config.data.n_max,
                    gib(needed),
                    config.section(),
                    gib(u128::from(available))
                ),
            ));
        }
    }
    Ok(())
}

/// `MemAvailable` from `/proc/meminfo` (Linux); `None` elsewhere.
fn available_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

fn gib(bytes: u128) -> String {
    format!("{:.1} GiB", bytes as f64 / f64::from(1u32 << 30))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machine_reports_its_available_memory() {
        if cfg!(target_os = "linux") {
            assert!(available_bytes().is_some_and(|b| b > 0));
        }
    }
}
