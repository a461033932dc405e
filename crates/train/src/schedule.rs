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
            let (start, length) = sgdr_cycle(epoch, config.restart_epochs, config.restart_mult);
            cosine((epoch - start) / length)
        }
        ScheduleKind::Step => config.gamma.powf((epoch / config.step_epochs).floor()),
    }
}

/// The SGDR cycle holding `epoch`: cycles of length `T_0`, `T_0 T_mult`, `T_0 T_mult^2`,
/// ... start at `T_0 (T_mult^k - 1) / (T_mult - 1)` (`k T_0` for `T_mult = 1`). Computed
/// in closed form, then corrected by at most a few steps for rounding: walking the cycles
/// one by one would take 10^300 steps for `restart_epochs = 1e-300`.
fn sgdr_cycle(epoch: f64, t0: f64, mult: f64) -> (f64, f64) {
    let start_of = |k: f64| {
        if mult == 1.0 {
            k * t0
        } else {
            t0 * (mult.powf(k) - 1.0) / (mult - 1.0)
        }
    };
    let mut k = if mult == 1.0 {
        (epoch / t0).floor()
    } else {
        (1.0 + epoch * (mult - 1.0) / t0).log(mult).floor()
    };
    if !k.is_finite() || k < 0.0 {
        k = 0.0;
    }
    for _ in 0..4 {
        if start_of(k) > epoch && k > 0.0 {
            k -= 1.0;
        } else if start_of(k + 1.0) <= epoch {
            k += 1.0;
        }
    }
    (start_of(k), t0 * mult.powf(k))
}
