//! Learning-rate schedules as a factor of the base rate, evaluated at fractional epochs.

use crate::config::{ScheduleConfig, ScheduleKind};

/// The learning-rate factor at `epoch` (fractional, from 0) of a run of `epochs` epochs.
pub fn lr_factor(config: &ScheduleConfig, epoch: f64, epochs: usize) -> f64 {
    let total = epochs as f64;
    let min = config.min_lr_ratio;
    let cosine = |progress: f64| {
        min + (1.0 - min) * 0.5 * (1.0 + (std::f64::consts::PI * progress.clamp(0.0, 1.0)).cos())
    };
    match config.kind {
        ScheduleKind::Constant => 1.0,
        ScheduleKind::WarmupCosine => {
            let warm = config.warmup_epochs.min(total);
            if epoch < warm {
                // Linear warm-up from 1/steps-ish to 1 (never exactly 0: the first step moves).
                ((epoch + 1e-3) / warm).min(1.0)
            } else {
                cosine((epoch - warm) / (total - warm).max(f64::MIN_POSITIVE))
            }
        }
        ScheduleKind::CosineRestarts => {
            // SGDR: cycles of length T_0, T_0 T_mult, T_0 T_mult^2, ...
            let (mut start, mut length) = (0.0, config.restart_epochs);
            while epoch >= start + length {
                start += length;
                length *= config.restart_mult;
            }
            cosine((epoch - start) / length)
        }
        ScheduleKind::Step => config.gamma.powf((epoch / config.step_epochs).floor()),
    }
}
