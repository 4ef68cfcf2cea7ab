//! Keras-semantics callbacks as pure state machines over per-epoch metrics.
//! The loop feeds them the same numbers it logs; their state is saved in
//! every checkpoint so a resumed run continues their counters exactly.
//!
//! Epochs are counted from 0 here, as in Keras's `on_epoch_end(epoch)`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::plan::{EarlyStoppingPlan, Monitor, ReduceLrPlan, SchedulePlan, ScheduleShape};

/// Metrics of one finished epoch, by Keras name (`loss`, `val_accuracy`, ...).
pub type Logs = BTreeMap<String, f64>;

/// What early stopping decided after an epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Continue,
    /// Stop training; `restore` asks the loop to load the best weights,
    /// which were saved at `best_epoch`.
    Stop {
        restore: Option<usize>,
    },
}

/// `EarlyStopping` exactly as Keras 3:
/// - epochs before `start_from_epoch` are ignored entirely;
/// - every considered epoch increments `wait`; an improvement (beating the
///   best by more than `min_delta`) records the new best and resets `wait`,
///   unless a `baseline` is set and not yet beaten;
/// - training stops when `wait >= patience` (never after the first epoch);
/// - `restore_best_weights` restores the best epoch's weights only when
///   training is stopped by this callback. If training ends by reaching
///   `train.epochs`, the final weights are kept (Keras behaves the same way);
///   the `best` checkpoint still holds the best weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EarlyStopping {
    #[serde(skip)]
    plan: Option<EarlyStoppingPlan>,
    pub wait: usize,
    pub best: Option<f64>,
    pub best_epoch: Option<usize>,
    pub stopped_epoch: Option<usize>,
}

impl EarlyStopping {
    pub fn new(plan: &EarlyStoppingPlan) -> EarlyStopping {
        EarlyStopping {
            plan: Some(plan.clone()),
            wait: 0,
            best: None,
            best_epoch: None,
            stopped_epoch: None,
        }
    }

    /// Continue from saved counters.
    pub fn restore(plan: &EarlyStoppingPlan, saved: &EarlyStopping) -> EarlyStopping {
        EarlyStopping {
            plan: Some(plan.clone()),
            ..saved.clone()
        }
    }

    pub fn on_epoch_end(&mut self, epoch: usize, logs: &Logs) -> Decision {
        let Some(spec) = &self.plan else {
            return Decision::Continue;
        };
        let monitor = &spec.monitor;
        let Some(&current) = logs.get(&monitor.metric) else {
            return Decision::Continue;
        };
        if epoch < spec.start_from_epoch || current.is_nan() {
            return Decision::Continue;
        }
        if spec.restore_best_weights && self.best_epoch.is_none() {
            self.best_epoch = Some(epoch);
        }
        self.wait += 1;
        let beats_best = match self.best {
            None => true,
            Some(best) => monitor.improves(current, best, spec.min_delta),
        };
        if beats_best {
            self.best = Some(current);
            self.best_epoch = Some(epoch);
            let beats_baseline = match spec.baseline {
                None => true,
                Some(b) => monitor.improves(current, b, spec.min_delta),
            };
            if beats_baseline {
                self.wait = 0;
            }
            return Decision::Continue;
        }
        if self.wait >= spec.patience && epoch > 0 {
            self.stopped_epoch = Some(epoch);
            let restore = if spec.restore_best_weights {
                self.best_epoch
            } else {
                None
            };
            return Decision::Stop { restore };
        }
        Decision::Continue
    }
}

/// `ReduceLROnPlateau` as Keras: after `patience` epochs without an
/// improvement larger than `min_delta`, multiply the rate by `factor` (not
/// below `min_lr`), then wait `cooldown` epochs before counting again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReduceLrOnPlateau {
    #[serde(skip)]
    plan: Option<ReduceLrPlan>,
    pub wait: usize,
    pub cooldown_counter: usize,
    pub best: Option<f64>,
    /// Multiplier applied on top of the schedule (1.0 until the first reduction).
    pub factor: f64,
}

impl ReduceLrOnPlateau {
    pub fn new(plan: &ReduceLrPlan) -> ReduceLrOnPlateau {
        ReduceLrOnPlateau {
            plan: Some(plan.clone()),
            wait: 0,
            cooldown_counter: 0,
            best: None,
            factor: 1.0,
        }
    }

    pub fn restore(plan: &ReduceLrPlan, saved: &ReduceLrOnPlateau) -> ReduceLrOnPlateau {
        ReduceLrOnPlateau {
            plan: Some(plan.clone()),
            ..saved.clone()
        }
    }

    /// Update after an epoch that ran at `lr`; returns the new multiplier
    /// when the rate was reduced.
    pub fn on_epoch_end(&mut self, logs: &Logs, lr: f64) -> Option<f64> {
        let Some(spec) = &self.plan else {
            return None;
        };
        let monitor = &spec.monitor;
        let current = *logs.get(&monitor.metric)?;
        if current.is_nan() {
            return None;
        }
        let in_cooldown = self.cooldown_counter > 0;
        if in_cooldown {
            self.cooldown_counter -= 1;
            self.wait = 0;
        }
        let improved = match self.best {
            None => true,
            Some(best) => monitor.improves(current, best, spec.min_delta),
        };
        if improved {
            self.best = Some(current);
            self.wait = 0;
            return None;
        }
        if in_cooldown {
            return None;
        }
        self.wait += 1;
        if self.wait >= spec.patience && lr > spec.min_lr {
            let new_lr = (lr * spec.factor).max(spec.min_lr);
            self.factor *= new_lr / lr;
            self.cooldown_counter = spec.cooldown;
            self.wait = 0;
            return Some(self.factor);
        }
        None
    }
}

/// The learning rate for `epoch` (from 0) under a schedule, before any
/// plateau reduction. Warm-up ramps linearly from `base / warmup` to `base`.
pub fn scheduled_lr(
    schedule: Option<&SchedulePlan>,
    base: f64,
    epoch: usize,
    epochs: usize,
) -> f64 {
    let Some(s) = schedule else { return base };
    let warmup = s.warmup_epochs;
    if epoch < warmup {
        return base * (epoch + 1) as f64 / (warmup + 1) as f64;
    }
    let e = epoch - warmup;
    match s.shape {
        ScheduleShape::Constant => base,
        ScheduleShape::Step { step_size, gamma } => {
            base * gamma.powi((e / step_size.max(1)) as i32)
        }
        ScheduleShape::Cosine { min_lr } => {
            let span = epochs.saturating_sub(warmup).max(1) as f64;
            let t = (e as f64 / span).min(1.0);
            min_lr + (base - min_lr) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
        }
    }
}

/// Best-value tracking for `ModelCheckpoint` (no `min_delta`, as Keras).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointTracker {
    #[serde(skip)]
    monitor: Option<Monitor>,
    pub best: Option<f64>,
    pub best_epoch: Option<usize>,
}

impl CheckpointTracker {
    pub fn new(monitor: Monitor) -> CheckpointTracker {
        CheckpointTracker {
            monitor: Some(monitor),
            best: None,
            best_epoch: None,
        }
    }

    pub fn restore(monitor: Monitor, saved: &CheckpointTracker) -> CheckpointTracker {
        CheckpointTracker {
            monitor: Some(monitor),
            ..saved.clone()
        }
    }

    /// True when this epoch is the best so far and should be saved as `best`.
    pub fn on_epoch_end(&mut self, epoch: usize, logs: &Logs) -> bool {
        let Some(monitor) = &self.monitor else {
            return false;
        };
        let Some(&current) = logs.get(&monitor.metric) else {
            return false;
        };
        if current.is_nan() {
            return false;
        }
        let improved = match self.best {
            None => true,
            Some(best) => monitor.improves(current, best, 0.0),
        };
        if improved {
            self.best = Some(current);
            self.best_epoch = Some(epoch);
        }
        improved
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::Mode;

    fn es(patience: usize, restore: bool) -> EarlyStoppingPlan {
        EarlyStoppingPlan {
            monitor: Monitor::new("val_loss", Mode::Auto),
            patience,
            min_delta: 0.0,
            baseline: None,
            start_from_epoch: 0,
            restore_best_weights: restore,
        }
    }

    fn logs(v: f64) -> Logs {
        BTreeMap::from([("val_loss".to_string(), v)])
    }

    /// Feed a scripted metric sequence; return the epoch it stopped at.
    fn run(cb: &mut EarlyStopping, seq: &[f64]) -> Option<(usize, Option<usize>)> {
        for (epoch, v) in seq.iter().enumerate() {
            if let Decision::Stop { restore } = cb.on_epoch_end(epoch, &logs(*v)) {
                return Some((epoch, restore));
            }
        }
        None
    }

    #[test]
    fn stops_after_patience_epochs_without_improvement_and_restores_best() {
        let mut cb = EarlyStopping::new(&es(2, true));
        // best at epoch 1 (0.5); epochs 2 and 3 do not improve; stop at 3.
        let got = run(&mut cb, &[0.9, 0.5, 0.6, 0.55, 0.4]);
        assert_eq!(got, Some((3, Some(1))));
        assert_eq!(cb.best, Some(0.5));
    }

    #[test]
    fn min_delta_makes_small_gains_not_count() {
        let mut spec = es(2, false);
        spec.min_delta = 0.1;
        let mut cb = EarlyStopping::new(&spec);
        // 0.95 and 0.9 beat 1.0 by less than 0.1: no improvement.
        assert_eq!(run(&mut cb, &[1.0, 0.95, 0.9, 0.5]), Some((2, None)));
    }

    #[test]
    fn start_from_epoch_ignores_early_epochs() {
        let mut spec = es(1, false);
        spec.start_from_epoch = 3;
        let mut cb = EarlyStopping::new(&spec);
        assert_eq!(run(&mut cb, &[0.1, 0.2, 0.3, 0.4, 0.5]), Some((4, None)));
    }

    #[test]
    fn baseline_must_be_beaten_to_reset_wait() {
        let mut spec = es(2, false);
        spec.baseline = Some(0.3);
        let mut cb = EarlyStopping::new(&spec);
        // Improving but never below the baseline keeps `wait` growing, so the
        // first epoch without improvement stops at once.
        assert_eq!(run(&mut cb, &[0.9, 0.8, 0.7, 0.75]), Some((3, None)));
        // Without a baseline the same sequence keeps going.
        let mut cb = EarlyStopping::new(&es(2, false));
        assert_eq!(run(&mut cb, &[0.9, 0.8, 0.7, 0.75]), None);
    }

    #[test]
    fn never_stops_while_improving() {
        let mut cb = EarlyStopping::new(&es(1, true));
        assert_eq!(run(&mut cb, &[5.0, 4.0, 3.0, 2.0, 1.0]), None);
        assert_eq!(cb.best_epoch, Some(4));
    }

    #[test]
    fn max_mode_for_accuracy() {
        let mut spec = es(1, true);
        spec.monitor = Monitor::new("val_accuracy", Mode::Auto);
        let mut cb = EarlyStopping::new(&spec);
        let seq = [0.5, 0.7, 0.6];
        let mut stopped = None;
        for (e, v) in seq.iter().enumerate() {
            if let Decision::Stop { restore } =
                cb.on_epoch_end(e, &BTreeMap::from([("val_accuracy".to_string(), *v)]))
            {
                stopped = Some((e, restore));
            }
        }
        assert_eq!(stopped, Some((2, Some(1))));
    }

    #[test]
    fn plateau_reduces_then_cools_down() {
        let spec = ReduceLrPlan {
            monitor: Monitor::new("val_loss", Mode::Auto),
            factor: 0.5,
            patience: 2,
            min_delta: 0.0,
            cooldown: 1,
            min_lr: 0.0,
        };
        let mut cb = ReduceLrOnPlateau::new(&spec);
        let mut lr = 1.0;
        let mut reductions = vec![];
        for (e, v) in [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0].iter().enumerate() {
            if let Some(f) = cb.on_epoch_end(&logs(*v), lr) {
                lr = f;
                reductions.push(e);
            }
        }
        // wait 2 epochs (1, 2) -> reduce at 2; cooldown epoch 3; wait 4, 5 -> reduce at 5.
        assert_eq!(reductions, vec![2, 5]);
        assert!((lr - 0.25).abs() < 1e-12);
    }

    #[test]
    fn schedules() {
        let step = SchedulePlan {
            warmup_epochs: 0,
            shape: ScheduleShape::Step {
                step_size: 2,
                gamma: 0.1,
            },
        };
        let lrs: Vec<f64> = (0..5)
            .map(|e| scheduled_lr(Some(&step), 1.0, e, 5))
            .collect();
        assert_eq!(lrs, vec![1.0, 1.0, 0.1, 0.1, 0.010000000000000002]);
        let cos = SchedulePlan {
            warmup_epochs: 1,
            shape: ScheduleShape::Cosine { min_lr: 0.0 },
        };
        assert!((scheduled_lr(Some(&cos), 1.0, 0, 5) - 0.5).abs() < 1e-12);
        assert!((scheduled_lr(Some(&cos), 1.0, 1, 5) - 1.0).abs() < 1e-12);
        assert!(scheduled_lr(Some(&cos), 1.0, 4, 5) < 0.2);
    }

    #[test]
    fn checkpoint_tracker_saves_only_on_improvement() {
        let mut t = CheckpointTracker::new(Monitor::new("val_loss", Mode::Auto));
        let saved: Vec<bool> = [0.5, 0.6, 0.4, 0.4, 0.3]
            .iter()
            .enumerate()
            .map(|(e, v)| t.on_epoch_end(e, &logs(*v)))
            .collect();
        assert_eq!(saved, vec![true, false, true, false, true]);
        assert_eq!(t.best_epoch, Some(4));
    }
}
