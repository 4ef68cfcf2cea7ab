//! Promotion-based asynchronous successive halving: the decisions of the
//! ASHA paper's Algorithm 1 (Li et al., "A System for Massively Parallel
//! Hyperparameter Tuning", MLSys 2020, arXiv:1810.05934), the variant that
//! Syne Tune calls `type = "promotion"`.
//!
//! This module is the pure decision logic, beside the stopping variant of
//! [`super::asha`]: it does no I/O and reads no clocks. The rungs and
//! brackets are those of [`EarlyStop`]; what differs is what happens at a
//! rung.
//!
//! # The rule
//!
//! A trial trains up to the next rung of its bracket and *pauses* there
//! (its value is recorded, a [`Decision::Pause`] record). Whenever a worker
//! is free, the scheduler asks [`Promotions::next`] what to run:
//!
//! 1. From the highest rung down (across brackets, the rung with the most
//!    epochs first; on equal epochs the lower bracket), the paused trial
//!    with the best value there that is among the top `k` of the `n` values
//!    recorded at that rung is *promoted*: it resumes from its checkpoint
//!    and trains to the next rung, or to `max_epochs` after the last rung
//!    (a [`Decision::Continue`] record). A trial is among the top `k` when
//!    fewer than `k` of the values are strictly better than its own (ties
//!    are promoted); a NaN is never promoted.
//! 2. Otherwise a new trial starts, at epoch 0.
//!
//! Here `k = floor(n / eta)`, as in the paper: a rung promotes nobody
//! until `eta` trials have reached it. The paper's stream of new trials is
//! endless; a sweep's is not, so when no new trial can start (all are
//! started, or a budget is spent) and no trial is running, the sweep would
//! be over: then `k = max(1, floor(n / eta))`, so that the best trial of a
//! rung goes on (the lowest rung first, whose promotions fill the rungs
//! above it) as a complete rung of synchronous successive halving would
//! rank it, and a small sweep still trains a trial to the end. While trials run, a free worker waits
//! instead: what they bring to a rung may outrank what waits there.
//!
//! When nothing is running and nothing can be promoted, the sweep is over:
//! [`Promotions::finish`] prunes every trial still paused, at the rung it
//! paused at (a [`Decision::Prune`] record), for good.
//!
//! Unlike the stopping variant, no trial is judged once and for all on the
//! arrival order: a trial that reached a rung when too few values or
//! better ones were there waits, and is promoted as soon as it ranks in
//! the top `1/eta` of its rung.
//! The price is that promoted trials restart from a checkpoint, and that
//! trials wait at rungs.

use std::collections::BTreeMap;

use super::asha::{better, Decision, EarlyStop, RungRecord};

/// What the records say about one trial.
#[derive(Debug, Clone, Copy)]
struct TrialState {
    bracket: usize,
    /// The epochs it has trained (the rung it last reached).
    trained: usize,
    /// Paused at `trained`, waiting for a promotion.
    paused: bool,
    /// Pruned at `trained`, for good.
    pruned: bool,
}

/// What a free worker should run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Resume `trial` (paused after `from` epochs) and train it to `to`.
    Promote {
        trial: usize,
        from: usize,
        to: usize,
    },
    /// Start a new trial (it trains to [`Promotions::target`] of 0 epochs).
    Start,
    /// Nothing to run now.
    Wait,
}

/// The rung records of a promotion-based sweep and the rule that extends
/// them (see the [module documentation](self)).
#[derive(Debug, Clone)]
pub struct Promotions {
    plan: EarlyStop,
    maximize: bool,
    records: Vec<RungRecord>,
    /// The `(trial, value)`s recorded at each `(bracket, rung)`, in arrival
    /// order.
    rung_values: BTreeMap<(usize, usize), Vec<(usize, f64)>>,
    trials: BTreeMap<usize, TrialState>,
}

impl Promotions {
    /// No records yet. `maximize`: whether a higher metric is better.
    pub fn new(plan: EarlyStop, maximize: bool) -> Promotions {
        Promotions::restore(plan, maximize, Vec::new())
    }

    /// Records read back from the journal, in the order they were made.
    /// A record that does not follow from the state (a promotion of a trial
    /// that is not paused at that rung, a second arrival at a rung) is kept
    /// but changes nothing.
    pub fn restore(plan: EarlyStop, maximize: bool, records: Vec<RungRecord>) -> Promotions {
        let mut p = Promotions {
            plan,
            maximize,
            records: Vec::with_capacity(records.len()),
            rung_values: BTreeMap::new(),
            trials: BTreeMap::new(),
        };
        for record in records {
            p.push(record);
        }
        p
    }

    /// The plan the decisions follow.
    pub fn plan(&self) -> &EarlyStop {
        &self.plan
    }

    /// Every record, in the order made.
    pub fn records(&self) -> &[RungRecord] {
        &self.records
    }

    /// The epochs trial `trial` trains to from `trained` epochs: the next
    /// rung of its bracket above `trained`, or `max_epochs`.
    pub fn target(&self, trial: usize, trained: usize) -> usize {
        let bracket = self.bracket(trial);
        self.plan
            .rungs(bracket)
            .into_iter()
            .find(|&r| r > trained)
            .unwrap_or(self.plan.max_epochs)
    }

    /// The epochs of `trial`'s last rung record (0 without one): where its
    /// next launch starts from.
    pub fn decided_epochs(&self, trial: usize) -> usize {
        self.trials.get(&trial).map_or(0, |s| s.trained)
    }

    /// The trial's bracket: that of its records, or
    /// [`EarlyStop::bracket_of`] its index.
    fn bracket(&self, trial: usize) -> usize {
        self.trials
            .get(&trial)
            .map_or_else(|| self.plan.bracket_of(trial), |s| s.bracket)
    }

    /// Trial `trial` has trained to `epoch` epochs, the target it was given,
    /// with `value` there. At a rung it pauses (a NaN value is pruned at
    /// once: a diverged trial is never promoted); the record is returned.
    /// At `max_epochs`, or anywhere else, there is no decision: `None`.
    pub fn arrive(&mut self, trial: usize, epoch: usize, value: f64) -> Option<RungRecord> {
        let bracket = self.bracket(trial);
        if !self.plan.rungs(bracket).contains(&epoch) {
            return None;
        }
        if self
            .rung_values
            .get(&(bracket, epoch))
            .is_some_and(|v| v.iter().any(|(t, _)| *t == trial))
        {
            return None;
        }
        let decision = if value.is_nan() {
            Decision::Prune
        } else {
            Decision::Pause
        };
        let record = RungRecord {
            trial,
            bracket,
            epoch,
            value,
            decision,
        };
        self.push(record.clone());
        Some(record)
    }

    /// What a free worker should run now; `starting`: whether the sweep
    /// can still start new trials; `running`: how many trials run now.
    /// Nothing is recorded until [`promote`](Self::promote).
    pub fn next(&self, starting: bool, running: usize) -> Next {
        let mut rungs: Vec<(usize, usize)> = self.rung_values.keys().copied().collect();
        // The most epochs first; on equal epochs the lower bracket.
        rungs.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        if let Some(next) = rungs.iter().find_map(|&r| self.promotable(r, false)) {
            return next;
        }
        if starting {
            return Next::Start;
        }
        if running > 0 {
            return Next::Wait;
        }
        // The sweep would be over: the best of a rung goes on, the lowest
        // rung first, whose promotions fill the rungs above it.
        rungs
            .iter()
            .rev()
            .find_map(|&r| self.promotable(r, true))
            .unwrap_or(Next::Wait)
    }

    /// The promotion at `(bracket, rung)`, if one is due: the best trial
    /// paused there, when fewer than `k` values there are strictly better
    /// (`k = floor(n / eta)`, or `max(1, floor(n / eta))` when `at_least_one`).
    fn promotable(&self, (bracket, epoch): (usize, usize), at_least_one: bool) -> Option<Next> {
        let values = self.rung_values.get(&(bracket, epoch))?;
        let n = values.len();
        let k = n / self.plan.reduction_factor.max(2);
        let k = if at_least_one { k.max(1) } else { k };
        let waiting = values.iter().copied().filter(|(t, v)| {
            !v.is_nan()
                && self
                    .trials
                    .get(t)
                    .is_some_and(|s| s.paused && s.trained == epoch)
        });
        // The best; of equal values the first to arrive.
        let (trial, value) =
            waiting.reduce(|best, x| if self.better(x.1, best.1) { x } else { best })?;
        let better = values
            .iter()
            .filter(|(_, v)| self.better(*v, value))
            .count();
        (better < k).then(|| Next::Promote {
            trial,
            from: epoch,
            to: self.target(trial, epoch),
        })
    }

    /// Records the promotion of `trial`, paused at rung `epoch` (a
    /// [`Decision::Continue`] record, returned). `None` when it is not
    /// paused there.
    pub fn promote(&mut self, trial: usize, epoch: usize) -> Option<RungRecord> {
        let state = self.trials.get(&trial)?;
        if !(state.paused && state.trained == epoch) {
            return None;
        }
        let value = self.value_at(trial, state.bracket, epoch)?;
        let record = RungRecord {
            trial,
            bracket: state.bracket,
            epoch,
            value,
            decision: Decision::Continue,
        };
        self.push(record.clone());
        Some(record)
    }

    /// The sweep is over: every trial still paused is pruned at its rung,
    /// for good, in trial order (the records returned).
    pub fn finish(&mut self) -> Vec<RungRecord> {
        let paused: Vec<(usize, TrialState)> = self
            .trials
            .iter()
            .filter(|(_, s)| s.paused)
            .map(|(t, s)| (*t, *s))
            .collect();
        let mut new = Vec::new();
        for (trial, state) in paused {
            let value = self
                .value_at(trial, state.bracket, state.trained)
                .unwrap_or(f64::NAN);
            let record = RungRecord {
                trial,
                bracket: state.bracket,
                epoch: state.trained,
                value,
                decision: Decision::Prune,
            };
            self.push(record.clone());
            new.push(record);
        }
        new
    }

    /// The rung a trial is paused at, if it is.
    pub fn paused_at(&self, trial: usize) -> Option<usize> {
        self.trials
            .get(&trial)
            .filter(|s| s.paused)
            .map(|s| s.trained)
    }

    /// The rung a trial was pruned at, if it was.
    pub fn pruned_at(&self, trial: usize) -> Option<usize> {
        self.trials
            .get(&trial)
            .filter(|s| s.pruned)
            .map(|s| s.trained)
    }

    fn value_at(&self, trial: usize, bracket: usize, epoch: usize) -> Option<f64> {
        self.rung_values
            .get(&(bracket, epoch))?
            .iter()
            .find(|(t, _)| *t == trial)
            .map(|(_, v)| *v)
    }

    fn better(&self, a: f64, b: f64) -> bool {
        better(self.maximize, a, b)
    }

    /// Appends a record and applies it to the state when it follows from it.
    fn push(&mut self, record: RungRecord) {
        let RungRecord {
            trial,
            bracket,
            epoch,
            value,
            decision,
        } = record;
        let state = self.trials.get(&trial).copied();
        match decision {
            Decision::Pause | Decision::Prune
                if state.is_none_or(|s| !s.pruned && !s.paused && s.trained < epoch) =>
            {
                let bracket = state.map_or(bracket, |s| s.bracket);
                self.rung_values
                    .entry((bracket, epoch))
                    .or_default()
                    .push((trial, value));
                self.trials.insert(
                    trial,
                    TrialState {
                        bracket,
                        trained: epoch,
                        paused: decision == Decision::Pause,
                        pruned: decision == Decision::Prune,
                    },
                );
            }
            Decision::Prune => {
                // The end of the sweep: a paused trial is pruned where it is.
                if let Some(s) = self.trials.get_mut(&trial) {
                    if s.paused && s.trained == epoch {
                        s.paused = false;
                        s.pruned = true;
                    }
                }
            }
            Decision::Continue => {
                if let Some(s) = self.trials.get_mut(&trial) {
                    if s.paused && s.trained == epoch {
                        s.paused = false;
                    }
                }
            }
            Decision::Pause => {}
        }
        self.records.push(record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sweep::asha::EarlyStopKind;

    fn asha(min: usize, eta: usize, max: usize) -> EarlyStop {
        EarlyStop {
            kind: EarlyStopKind::Asha,
            min_epochs: min,
            reduction_factor: eta,
            max_epochs: max,
        }
    }

    /// Runs `values[t]` (trial t's metric after each epoch) one worker at a
    /// time, `trials` trials, and returns each trial's epochs trained and
    /// the records.
    fn one_worker(p: &mut Promotions, values: &[Vec<f64>]) -> Vec<usize> {
        let mut trained = vec![0; values.len()];
        let mut started = 0;
        loop {
            let (trial, to) = match p.next(started < values.len(), 0) {
                Next::Promote { trial, from, to } => {
                    assert!(p.promote(trial, from).is_some());
                    (trial, to)
                }
                Next::Start => {
                    started += 1;
                    (started - 1, p.target(started - 1, 0))
                }
                Next::Wait => break,
            };
            trained[trial] = to;
            p.arrive(trial, to, values[trial][to - 1]);
        }
        p.finish();
        trained
    }

    fn decisions(p: &Promotions) -> Vec<(usize, usize, Decision)> {
        p.records()
            .iter()
            .map(|r| (r.trial, r.epoch, r.decision))
            .collect()
    }

    /// Rungs 1 and 2 of 4 epochs (eta 2), four trials, one worker. By
    /// hand: t0 pauses at 1 (0.5; n = 1, k = 0: t1 starts); t1 pauses at 1
    /// with 0.7 and is the top 1 of 2: promoted, pauses at 2 (0.8; n = 1,
    /// k = 0). At rung 1, t0 is not in the top 1 of 2: t2 starts, pauses
    /// at 1 (0.6: 0.7 is better, k = 1 of 3): t3 starts, 0.9 at 1 is the
    /// top of 4 (k = 2): promoted, 0.85 at 2, the top 1 of 2: promoted to
    /// 4. No trial is left to start; t1 (0.8 < 0.85 at rung 2, k = 1) and
    /// t2 (0.7 and 0.9 better at rung 1, k = 2) and t0 stay paused and are
    /// pruned where they are.
    #[test]
    fn one_worker_matches_a_hand_computation() {
        use Decision::{Continue, Pause, Prune};
        let mut p = Promotions::new(asha(1, 2, 4), true);
        let values = vec![
            vec![0.5, 0.55, 0.6, 0.65],
            vec![0.7, 0.8, 0.9, 0.95],
            vec![0.6, 0.7, 0.8, 0.9],
            vec![0.9, 0.85, 0.88, 0.9],
        ];
        assert_eq!(one_worker(&mut p, &values), vec![1, 2, 1, 4]);
        assert_eq!(
            decisions(&p),
            vec![
                (0, 1, Pause),
                (1, 1, Pause),
                (1, 1, Continue),
                (1, 2, Pause),
                (2, 1, Pause),
                (3, 1, Pause),
                (3, 1, Continue),
                (3, 2, Pause),
                (3, 2, Continue),
                (0, 1, Prune),
                (1, 2, Prune),
                (2, 1, Prune),
            ]
        );
        assert_eq!(p.pruned_at(1), Some(2));
        assert!((0..4).all(|t| p.paused_at(t).is_none()));
    }

    /// A trial that paused when the rung held better values is promoted
    /// later, once enough trials have reached the rung for it to be in the
    /// top 1/eta: what the stopping variant cannot do.
    #[test]
    fn a_paused_trial_is_promoted_when_the_rung_fills() {
        let mut p = Promotions::new(asha(1, 2, 4), true);
        p.arrive(0, 1, 0.9);
        p.arrive(1, 1, 0.8);
        assert!(matches!(p.next(true, 0), Next::Promote { trial: 0, .. }));
        p.promote(0, 1);
        // Trial 1 is second of 2 (k = 1), then of 3 with a worse one
        // (k = 1), then of 4 (k = 2): promoted.
        assert_eq!(p.next(true, 0), Next::Start);
        p.arrive(2, 1, 0.1);
        assert_eq!(p.next(true, 0), Next::Start);
        p.arrive(3, 1, 0.2);
        assert_eq!(
            p.next(true, 0),
            Next::Promote {
                trial: 1,
                from: 1,
                to: 2
            }
        );
    }

    /// Once no new trial can start, the best trial of a rung goes on even
    /// when fewer than eta reached it, so a small sweep still trains one
    /// trial to the end.
    #[test]
    fn with_nothing_left_to_start_the_best_of_a_rung_goes_on() {
        let mut p = Promotions::new(asha(1, 3, 9), true);
        assert_eq!(p.arrive(0, 1, 0.4).unwrap().decision, Decision::Pause);
        assert_eq!(p.next(true, 0), Next::Start);
        assert_eq!(
            p.next(false, 0),
            Next::Promote {
                trial: 0,
                from: 1,
                to: 3
            }
        );
        p.promote(0, 1);
        assert_eq!(p.target(0, 3), 9);
        p.arrive(0, 3, 0.5);
        assert!(matches!(
            p.next(false, 0),
            Next::Promote {
                trial: 0,
                to: 9,
                ..
            }
        ));
    }

    /// The highest rung first: a promotable trial at rung 2 goes before a
    /// promotable one at rung 1.
    #[test]
    fn the_highest_rung_is_served_first() {
        let mut p = Promotions::new(asha(1, 2, 8), false);
        for (t, v) in [(0, 0.5), (1, 0.4), (2, 0.3), (3, 0.2)] {
            p.arrive(t, 1, v);
        }
        // Minimizing: trials 3 and 2 are the top 2 of 4.
        assert!(matches!(p.next(true, 0), Next::Promote { trial: 3, .. }));
        p.promote(3, 1);
        p.arrive(3, 2, 0.1);
        p.arrive(2, 1, 0.3); // a second arrival changes nothing
        assert!(matches!(
            p.next(true, 0),
            Next::Promote {
                trial: 2,
                from: 1,
                ..
            }
        ));
        p.promote(2, 1);
        p.arrive(2, 2, 0.15);
        assert!(matches!(
            p.next(true, 0),
            Next::Promote {
                trial: 3,
                from: 2,
                to: 4
            }
        ));
    }

    #[test]
    fn nan_is_pruned_at_once_and_never_promoted() {
        let mut p = Promotions::new(asha(1, 2, 4), true);
        assert_eq!(p.arrive(0, 1, f64::NAN).unwrap().decision, Decision::Prune);
        assert_eq!(p.pruned_at(0), Some(1));
        assert_eq!(p.next(false, 0), Next::Wait);
        // It still counts at the rung: with it, 0.3 is one of 2 (k = 1).
        p.arrive(1, 1, 0.3);
        assert!(matches!(p.next(true, 0), Next::Promote { trial: 1, .. }));
        // Arriving off a rung, or at max_epochs, decides nothing.
        assert_eq!(p.arrive(1, 3, 0.5), None);
        assert_eq!(p.arrive(1, 4, 0.5), None);
    }

    /// The journal's records restored give the same state: the same next
    /// step and the same decisions after it.
    #[test]
    fn restore_then_continue_matches_an_uninterrupted_run() {
        let values: Vec<Vec<f64>> = (0..9)
            .map(|t| {
                (1..=9)
                    .map(|e| ((t * 7 % 9) as f64 + e as f64) / 20.0)
                    .collect()
            })
            .collect();
        let mut whole = Promotions::new(asha(1, 3, 9), true);
        one_worker(&mut whole, &values);
        for cut in 0..whole.records().len() {
            let head = whole.records()[..cut].to_vec();
            let restored = Promotions::restore(asha(1, 3, 9), true, head.clone());
            let mut replayed = Promotions::new(asha(1, 3, 9), true);
            for r in head {
                replayed.push(r);
            }
            assert_eq!(decisions(&restored), decisions(&replayed));
            assert_eq!(restored.next(true, 0), replayed.next(true, 0), "cut {cut}");
        }
        let mut again = Promotions::new(asha(1, 3, 9), true);
        one_worker(&mut again, &values);
        assert_eq!(decisions(&again), decisions(&whole));
    }
}
