//! Early termination of sweep trials: the decisions of asynchronous
//! successive halving (ASHA) and of its Hyperband form.
//!
//! This module is the pure decision logic. It does no I/O, starts no
//! processes and reads no clocks: the scheduler feeds it each running trial's
//! per-epoch metric values ([`Asha::observe`]), stops the trials it prunes and
//! writes every decision ([`RungRecord`]) into the sweep's journal. A resumed
//! sweep reads those records back ([`Asha::restore`]) and so makes the same
//! decisions as an uninterrupted one.
//!
//! # ASHA
//!
//! ASHA is the stopping variant of asynchronous successive halving from
//! Li et al., "A System for Massively Parallel Hyperparameter Tuning"
//! (MLSys 2020, arXiv:1810.05934, 2018), the variant used by Ray Tune's ASHA
//! scheduler and Optuna's `SuccessiveHalvingPruner`. Every trial is started
//! with the full budget of `max_epochs`; at each *rung* (a number of
//! completed epochs, see [`EarlyStop::rungs`]) it is compared with the trials
//! that reached the same rung before it, and it either continues or is
//! pruned (stopped for good).
//!
//! # The rule
//!
//! At rung `r` of bracket `b`, the *competing values* are the values recorded
//! at that rung by the trials of that bracket so far, plus this trial's value:
//! `n` values in all. Values recorded with the decision
//! [`Prune`](Decision::Prune) count too: those trials reached the rung. Of the
//! `n` values, `k = max(1, floor(n / eta))` are kept: the trial continues when
//! its value is at least as good as the `k`-th best of the `n` (a tie
//! continues), and is pruned otherwise. Equivalently, it continues when fewer
//! than `k` of the competing values are strictly better than its own.
//! "Better" is higher when the sweep maximizes its metric, lower when it
//! minimizes it.
//!
//! This is the rule of Optuna's `SuccessiveHalvingPruner`, which promotes the
//! top `floor(n / eta)` of the values at a rung and, for the first `eta - 1`
//! trials to reach it (when `floor(n / eta)` is 0), the best so far.
//!
//! A NaN value is worse than any number, and a trial whose value at a rung is
//! NaN is always pruned, even when it is the first to reach that rung: a
//! diverged trial should stop. Its NaN still counts among the competing
//! values of later trials at that rung (it raises `n`, never the bar).
//!
//! Decisions are made in arrival order, so they depend on which trials
//! reached a rung earlier: the first trial at a rung always continues (unless
//! its value is NaN), and a trial is never re-judged when better ones arrive
//! later. That is intended (the algorithm is asynchronous: nothing waits for
//! a rung to fill), and it is why the journal keeps the records in the order
//! they were made.
//!
//! # Hyperband
//!
//! Hyperband (Li et al., "Hyperband: A Novel Bandit-Based Approach to
//! Hyperparameter Optimization", JMLR 2018) hedges over how aggressive the
//! halving should be by running several brackets. Here a Hyperband plan is
//! `s_max + 1` ASHA brackets ([`EarlyStop::brackets`]); bracket `b` starts its
//! rungs at `min_epochs * eta^b`, so bracket 0 is the most aggressive and the
//! last bracket usually has no rung at all (its trials always run to the
//! end). Each trial belongs to one bracket ([`EarlyStop::bracket_of`]), and
//! trials of different brackets never compete with each other.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::plan::{EarlyStopPlan, SweepPlan};

/// `[sweep.early_stop]` validated.
///
/// The methods assume a valid plan: `min_epochs >= 1`,
/// `reduction_factor >= 2` and `max_epochs > min_epochs`. They do not panic or
/// loop forever on an invalid one: a plan with `min_epochs == 0` or
/// `reduction_factor < 2` has one bracket and no rungs (it never prunes).
#[derive(Debug, Clone, PartialEq)]
pub struct EarlyStop {
    /// ASHA (one bracket) or Hyperband (several).
    pub kind: EarlyStopKind,
    /// The first rung of the most aggressive bracket (at least 1).
    pub min_epochs: usize,
    /// `eta`: at each rung about one trial in `eta` continues (at least 2).
    pub reduction_factor: usize,
    /// A trial's full budget, in epochs (more than `min_epochs`).
    pub max_epochs: usize,
}

/// How trials are stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EarlyStopKind {
    /// Asynchronous successive halving: one bracket.
    Asha,
    /// Hyperband: several ASHA brackets of different aggressiveness.
    Hyperband,
}

impl EarlyStop {
    /// The rule of a sweep with Hyperband early stopping, whose trials
    /// each belong to a bracket; `None` for ASHA (one bracket) or none.
    pub fn hyperband(sweep: &SweepPlan) -> Option<EarlyStop> {
        sweep
            .early_stop
            .filter(|e| e.hyperband)
            .map(|e| EarlyStop::of(&e))
    }

    /// `bracket N  `, to go before a trial's values where
    /// [`EarlyStop::hyperband`] gave a rule; nothing where it did not.
    pub fn bracket_label(hyperband: Option<&EarlyStop>, index: usize) -> String {
        hyperband
            .map(|rule| format!("bracket {}  ", rule.bracket_of(index)))
            .unwrap_or_default()
    }

    /// The rung rule of `[sweep.early_stop]`.
    pub fn of(e: &EarlyStopPlan) -> EarlyStop {
        EarlyStop {
            kind: if e.hyperband {
                EarlyStopKind::Hyperband
            } else {
                EarlyStopKind::Asha
            },
            min_epochs: e.min_epochs,
            reduction_factor: e.reduction_factor,
            max_epochs: e.max_epochs,
        }
    }

    /// Whether the plan's numbers allow rungs at all (`min_epochs >= 1` and
    /// `reduction_factor >= 2`).
    fn has_rungs(&self) -> bool {
        self.min_epochs >= 1 && self.reduction_factor >= 2
    }

    /// `s_max = floor(log_eta(max_epochs / min_epochs))`: the largest `s` with
    /// `min_epochs * eta^s <= max_epochs`, found by integer multiplication
    /// (no floating-point logarithm, whose rounding would give, for example,
    /// `log_3(243) = 4.999...`). 0 for an invalid plan.
    fn s_max(&self) -> usize {
        if !self.has_rungs() {
            return 0;
        }
        let mut s = 0;
        let mut budget = self.min_epochs;
        while let Some(next) = budget.checked_mul(self.reduction_factor) {
            if next > self.max_epochs {
                break;
            }
            budget = next;
            s += 1;
        }
        s
    }

    /// Number of brackets: 1 for ASHA; for Hyperband `s_max + 1`, where
    /// `s_max = floor(log_eta(max_epochs / min_epochs))` is computed with
    /// integer arithmetic (the largest `s` with
    /// `min_epochs * eta^s <= max_epochs`).
    pub fn brackets(&self) -> usize {
        match self.kind {
            EarlyStopKind::Asha => 1,
            EarlyStopKind::Hyperband => self.s_max() + 1,
        }
    }

    /// The rung epochs of bracket `bracket` (0 is the most aggressive, whose
    /// first rung is `min_epochs`): `min_epochs * eta^(bracket + k)` for
    /// `k = 0, 1, ...` while strictly below `max_epochs`.
    ///
    /// A trial that reaches `max_epochs` simply finishes: there is no
    /// decision there. So the Hyperband bracket with no halvings
    /// (`bracket == s_max`) has no rungs when `max_epochs` is exactly
    /// `min_epochs * eta^s_max`, and one rung (`min_epochs * eta^s_max`)
    /// otherwise. A bracket at or beyond [`brackets`](Self::brackets) of a
    /// Hyperband plan has no rungs.
    pub fn rungs(&self, bracket: usize) -> Vec<usize> {
        let mut rungs = Vec::new();
        if !self.has_rungs() {
            return rungs;
        }
        let eta = self.reduction_factor;
        let mut rung = self.min_epochs;
        for _ in 0..bracket {
            match rung.checked_mul(eta) {
                Some(next) if next < self.max_epochs => rung = next,
                _ => return rungs,
            }
        }
        while rung < self.max_epochs {
            rungs.push(rung);
            match rung.checked_mul(eta) {
                Some(next) => rung = next,
                None => break,
            }
        }
        rungs
    }

    /// Hyperband's bracket sizes `n_b`, indexed by bracket `b`: the bracket
    /// with `s = s_max - b` halvings has
    /// `n_s = ceil((s_max + 1) / (s + 1) * eta^s)`, computed exactly in
    /// integers. `[1]` for ASHA.
    fn bracket_sizes(&self) -> Vec<u128> {
        if self.kind == EarlyStopKind::Asha {
            return vec![1];
        }
        let s_max = self.s_max();
        let eta = self.reduction_factor as u128;
        let count = s_max as u128 + 1;
        (0..=s_max)
            .map(|b| {
                let s = (s_max - b) as u32;
                let numerator = count.saturating_mul(eta.saturating_pow(s));
                numerator.div_ceil(s as u128 + 1)
            })
            .collect()
    }

    /// The bracket of the sweep trial with 0-based index `index`; always 0
    /// for ASHA.
    ///
    /// For Hyperband the assignment is deterministic, a function of the index
    /// alone, and gives the brackets trials in the proportions of Hyperband's
    /// bracket sizes `n_s = ceil((s_max + 1) / (s + 1) * eta^s)`, where the
    /// bracket with `s` halvings is `b = s_max - s` (bracket 0, the most
    /// aggressive, is the largest). Trials are dealt out in index order:
    /// trial `i` goes to the bracket whose `(trials assigned so far) / n_b`
    /// is smallest, ties going to the lower `b`. So trials 0 to `s_max` go
    /// to brackets 0 to `s_max` in turn, no bracket is ever a whole trial or
    /// more ahead of its share `N * n_b / sum(n)` after `N` trials, and the
    /// pattern repeats every `sum(n)` trials (after which each bracket has had
    /// exactly `n_b`). The cost is `O((index mod sum(n)) * brackets)`.
    pub fn bracket_of(&self, index: usize) -> usize {
        if self.kind == EarlyStopKind::Asha {
            return 0;
        }
        let sizes = self.bracket_sizes();
        let period: u128 = sizes.iter().fold(0u128, |a, &n| a.saturating_add(n));
        if sizes.len() <= 1 || period == 0 {
            return 0;
        }
        let steps = index as u128 % period;
        let mut counts = vec![0u128; sizes.len()];
        let mut chosen = 0;
        for _ in 0..=steps {
            chosen = least_served(&counts, &sizes);
            counts[chosen] += 1;
        }
        chosen
    }
}

/// The bracket `b` whose `counts[b] / sizes[b]` is smallest (the lowest such
/// `b` on ties), compared exactly as `counts[a] * sizes[b]` against
/// `counts[b] * sizes[a]`.
fn least_served(counts: &[u128], sizes: &[u128]) -> usize {
    let mut best = 0;
    for b in 1..counts.len().min(sizes.len()) {
        if counts[b].saturating_mul(sizes[best]) < counts[best].saturating_mul(sizes[b]) {
            best = b;
        }
    }
    best
}

/// Whether metric value `a` is strictly better than `b` (higher when
/// `maximize`): a NaN is worse than any number and no better than another
/// NaN.
pub(super) fn better(maximize: bool, a: f64, b: f64) -> bool {
    match (a.is_nan(), b.is_nan()) {
        (true, _) => false,
        (false, true) => true,
        (false, false) if maximize => a > b,
        (false, false) => a < b,
    }
}

/// What happens to a trial at a rung.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// The trial runs on to its next rung (or to the end).
    Continue,
    /// The trial is stopped for good.
    Prune,
    /// The trial waits at the rung for a promotion (the promotion-based
    /// variant, [`super::promotion`]).
    Pause,
}

/// One decision at one rung, as the journal stores it.
///
/// In JSON a finite `value` is a number, and a non-finite one is the string
/// `"NaN"`, `"inf"` or `"-inf"` (JSON has no number for them, and
/// `serde_json` would write `null`, which does not read back as a number).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RungRecord {
    /// The sweep trial index.
    pub trial: usize,
    /// The trial's bracket.
    pub bracket: usize,
    /// The rung: epochs completed.
    pub epoch: usize,
    /// The metric after that epoch.
    #[serde(with = "metric_value")]
    pub value: f64,
    /// Continue or prune.
    pub decision: Decision,
}

/// Serde for a metric value that may be NaN or infinite: finite values as
/// numbers, the others as the strings `"NaN"`, `"inf"` and `"-inf"`. Reading
/// also accepts integers, `null` (as NaN) and the strings `"nan"`,
/// `"infinity"`, `"+inf"`, `"-infinity"` in any case.
mod metric_value {
    use std::fmt;

    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
        if value.is_nan() {
            serializer.serialize_str("NaN")
        } else if value.is_infinite() {
            serializer.serialize_str(if *value > 0.0 { "inf" } else { "-inf" })
        } else {
            serializer.serialize_f64(*value)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }

    struct ValueVisitor;

    impl Visitor<'_> for ValueVisitor {
        type Value = f64;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a number, or \"NaN\", \"inf\" or \"-inf\"")
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
            Ok(v)
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
            Ok(v as f64)
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
            Ok(v as f64)
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<f64, E> {
            match v.to_ascii_lowercase().as_str() {
                "nan" => Ok(f64::NAN),
                "inf" | "+inf" | "infinity" | "+infinity" => Ok(f64::INFINITY),
                "-inf" | "-infinity" => Ok(f64::NEG_INFINITY),
                _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
            }
        }

        fn visit_unit<E: de::Error>(self) -> Result<f64, E> {
            Ok(f64::NAN)
        }

        fn visit_none<E: de::Error>(self) -> Result<f64, E> {
            Ok(f64::NAN)
        }
    }
}

/// What the records say about one trial.
#[derive(Debug, Clone)]
struct TrialState {
    /// The bracket of its first record.
    bracket: usize,
    /// The rungs it has a record at.
    decided: BTreeSet<usize>,
    /// The rung of its first `Prune` record.
    pruned_at: Option<usize>,
}

/// The rung records of a sweep and the rule that extends them (see the
/// [module documentation](self) for the rule).
#[derive(Debug, Clone)]
pub struct Asha {
    plan: EarlyStop,
    maximize: bool,
    /// Every record, in the order made (or restored).
    records: Vec<RungRecord>,
    /// The values recorded at each `(bracket, rung)`, in arrival order.
    rung_values: BTreeMap<(usize, usize), Vec<f64>>,
    /// Each trial with at least one record.
    trials: BTreeMap<usize, TrialState>,
}

impl Asha {
    /// No records yet. `maximize`: whether a higher metric is better.
    pub fn new(plan: EarlyStop, maximize: bool) -> Asha {
        Asha::restore(plan, maximize, Vec::new())
    }

    /// Records read back from the journal, in the order they were made.
    ///
    /// The records are kept as given. A record for a `(trial, rung)` that
    /// already has one (which [`observe`](Self::observe) never makes) adds
    /// nothing to the state that later decisions use; a trial's bracket is
    /// that of its first record.
    pub fn restore(plan: EarlyStop, maximize: bool, records: Vec<RungRecord>) -> Asha {
        let mut asha = Asha {
            plan,
            maximize,
            records: Vec::with_capacity(records.len()),
            rung_values: BTreeMap::new(),
            trials: BTreeMap::new(),
        };
        for record in records {
            asha.push(record);
        }
        asha
    }

    /// The plan the decisions follow.
    pub fn plan(&self) -> &EarlyStop {
        &self.plan
    }

    /// Whether a higher metric is better.
    pub fn maximize(&self) -> bool {
        self.maximize
    }

    /// Every record, in the order made.
    pub fn records(&self) -> &[RungRecord] {
        &self.records
    }

    /// Trial `trial` has completed `values.len()` epochs; `values[e]` is its
    /// metric after epoch `e + 1` (so the value at rung `r` is
    /// `values[r - 1]`).
    ///
    /// Decides every rung of the trial's bracket that it has now reached and
    /// that has no record for this trial yet, in rung order, appending each
    /// decision to the records, and returns the new records. Stops after the
    /// first `Prune`: a pruned trial gets no later decisions, in this call or
    /// any later one. A rung already decided is never decided again, whatever
    /// the values passed now.
    ///
    /// The trial's bracket is [`EarlyStop::bracket_of`] its index, or the
    /// bracket of its records when it has some.
    pub fn observe(&mut self, trial: usize, values: &[f64]) -> Vec<RungRecord> {
        let bracket = match self.trials.get(&trial) {
            Some(state) if state.pruned_at.is_some() => return Vec::new(),
            Some(state) => state.bracket,
            None => self.plan.bracket_of(trial),
        };
        let mut new = Vec::new();
        for epoch in self.plan.rungs(bracket) {
            let Some(&value) = epoch.checked_sub(1).and_then(|i| values.get(i)) else {
                break;
            };
            if self.is_decided(trial, epoch) {
                continue;
            }
            let decision = self.decide(bracket, epoch, value);
            let record = RungRecord {
                trial,
                bracket,
                epoch,
                value,
                decision,
            };
            self.push(record.clone());
            new.push(record);
            if decision == Decision::Prune {
                break;
            }
        }
        new
    }

    /// The rung a trial was pruned at, if it was.
    pub fn pruned_at(&self, trial: usize) -> Option<usize> {
        self.trials.get(&trial).and_then(|state| state.pruned_at)
    }

    /// Whether `trial` has a record at rung `epoch`.
    fn is_decided(&self, trial: usize, epoch: usize) -> bool {
        self.trials
            .get(&trial)
            .is_some_and(|state| state.decided.contains(&epoch))
    }

    fn better(&self, a: f64, b: f64) -> bool {
        better(self.maximize, a, b)
    }

    /// The decision for a trial reaching rung `epoch` of `bracket` with
    /// `value`, against the values recorded there so far (the rule in the
    /// module documentation).
    fn decide(&self, bracket: usize, epoch: usize, value: f64) -> Decision {
        if value.is_nan() {
            return Decision::Prune;
        }
        let earlier: &[f64] = self
            .rung_values
            .get(&(bracket, epoch))
            .map_or(&[], Vec::as_slice);
        let n = earlier.len() + 1;
        let keep = (n / self.plan.reduction_factor.max(1)).max(1);
        let better = earlier.iter().filter(|&&v| self.better(v, value)).count();
        if better < keep {
            Decision::Continue
        } else {
            Decision::Prune
        }
    }

    /// Appends a record and indexes it (unless its `(trial, rung)` already has
    /// a record).
    fn push(&mut self, record: RungRecord) {
        let state = self
            .trials
            .entry(record.trial)
            .or_insert_with(|| TrialState {
                bracket: record.bracket,
                decided: BTreeSet::new(),
                pruned_at: None,
            });
        if state.decided.insert(record.epoch) {
            if record.decision == Decision::Prune && state.pruned_at.is_none() {
                state.pruned_at = Some(record.epoch);
            }
            self.rung_values
                .entry((record.bracket, record.epoch))
                .or_default()
                .push(record.value);
        }
        self.records.push(record);
    }
}

#[cfg(test)]
mod tests {
    use super::Decision::{Continue, Prune};
    use super::*;

    fn plan(kind: EarlyStopKind, min: usize, eta: usize, max: usize) -> EarlyStop {
        EarlyStop {
            kind,
            min_epochs: min,
            reduction_factor: eta,
            max_epochs: max,
        }
    }

    fn asha(min: usize, eta: usize, max: usize) -> EarlyStop {
        plan(EarlyStopKind::Asha, min, eta, max)
    }

    fn hyperband(min: usize, eta: usize, max: usize) -> EarlyStop {
        plan(EarlyStopKind::Hyperband, min, eta, max)
    }

    /// `len` epochs of values, NaN everywhere except at the given epochs
    /// (1-based): a value read at the wrong epoch would show as a NaN prune.
    fn at(len: usize, rung_values: &[(usize, f64)]) -> Vec<f64> {
        let mut values = vec![f64::NAN; len];
        for &(epoch, value) in rung_values {
            values[epoch - 1] = value;
        }
        values
    }

    /// `(trial, rung, decision)` of each record.
    fn decisions(records: &[RungRecord]) -> Vec<(usize, usize, Decision)> {
        records
            .iter()
            .map(|r| (r.trial, r.epoch, r.decision))
            .collect()
    }

    type Step = (usize, Vec<f64>);

    /// Feeds each step to `observe` and returns what each call returned.
    fn replay(asha: &mut Asha, steps: &[Step]) -> Vec<Vec<RungRecord>> {
        steps
            .iter()
            .map(|(trial, values)| asha.observe(*trial, values))
            .collect()
    }

    /// The steps with every value negated.
    fn negated(steps: &[Step]) -> Vec<Step> {
        steps
            .iter()
            .map(|(t, v)| (*t, v.iter().map(|x| -x).collect()))
            .collect()
    }

    #[test]
    fn rungs_and_brackets_min1_eta3_max27() {
        let a = asha(1, 3, 27);
        assert_eq!(a.brackets(), 1);
        // 1, 3, 9; 27 is max_epochs itself, where a trial just finishes.
        assert_eq!(a.rungs(0), vec![1, 3, 9]);
        let h = hyperband(1, 3, 27);
        // s_max = log_3(27) = 3: four brackets.
        assert_eq!(h.brackets(), 4);
        assert_eq!(h.rungs(0), vec![1, 3, 9]);
        assert_eq!(h.rungs(1), vec![3, 9]);
        assert_eq!(h.rungs(2), vec![9]);
        // The bracket with no halvings (s = 0) has no rungs.
        assert_eq!(h.rungs(3), Vec::<usize>::new());
        assert_eq!(h.rungs(4), Vec::<usize>::new());
        // n_s = ceil(4 / (s + 1) * 3^s): s = 3, 2, 1, 0 -> 27, 12, 6, 4.
        assert_eq!(h.bracket_sizes(), vec![27, 12, 6, 4]);
    }

    #[test]
    fn rungs_and_brackets_min2_eta2_max16() {
        let a = asha(2, 2, 16);
        assert_eq!(a.brackets(), 1);
        assert_eq!(a.rungs(0), vec![2, 4, 8]);
        let h = hyperband(2, 2, 16);
        // 2 * 2^3 = 16 <= 16, 2 * 2^4 = 32 > 16: s_max = 3.
        assert_eq!(h.brackets(), 4);
        assert_eq!(h.rungs(0), vec![2, 4, 8]);
        assert_eq!(h.rungs(1), vec![4, 8]);
        assert_eq!(h.rungs(2), vec![8]);
        assert_eq!(h.rungs(3), Vec::<usize>::new());
        // n_s = ceil(4 / (s + 1) * 2^s): s = 3, 2, 1, 0 -> 8, ceil(16/3) = 6, 4, 4.
        assert_eq!(h.bracket_sizes(), vec![8, 6, 4, 4]);
    }

    #[test]
    fn rungs_and_brackets_integer_edge_cases() {
        // max just below a power: 9 <= 26 < 27, s_max = 2.
        let h = hyperband(1, 3, 26);
        assert_eq!(h.brackets(), 3);
        assert_eq!(h.rungs(0), vec![1, 3, 9]);
        assert_eq!(h.rungs(2), vec![9]);
        assert_eq!(h.rungs(3), Vec::<usize>::new());
        // max just above a power: 27 <= 28, s_max = 3, and the bracket with
        // no halvings has the rung 27 < 28.
        let h = hyperband(1, 3, 28);
        assert_eq!(h.brackets(), 4);
        assert_eq!(h.rungs(0), vec![1, 3, 9, 27]);
        assert_eq!(h.rungs(3), vec![27]);
        // min_epochs == max_epochs / eta: one rung, two brackets.
        let h = hyperband(3, 3, 9);
        assert_eq!(h.brackets(), 2);
        assert_eq!(h.rungs(0), vec![3]);
        assert_eq!(h.rungs(1), Vec::<usize>::new());
        // max_epochs / min_epochs below eta: s_max = 0, one bracket, one rung.
        let h = hyperband(5, 2, 9);
        assert_eq!(h.brackets(), 1);
        assert_eq!(h.rungs(0), vec![5]);
        assert_eq!(h.bracket_of(7), 0);
        // Powers where a float logarithm rounds down: ln 243 / ln 3 and
        // ln 1000 / ln 10 are both just below an integer in f64.
        assert_eq!(hyperband(1, 3, 243).brackets(), 6);
        assert_eq!(hyperband(1, 10, 1000).brackets(), 4);
        assert_eq!(hyperband(1, 10, 1000).rungs(0), vec![1, 10, 100]);
        assert_eq!(hyperband(1, 10, 999).brackets(), 3);
        // No overflow near usize::MAX: 2^(BITS - 1) <= MAX < 2^BITS.
        let h = hyperband(1, 2, usize::MAX);
        assert_eq!(h.brackets(), usize::BITS as usize);
        assert_eq!(h.rungs(0).len(), usize::BITS as usize);
        assert_eq!(h.rungs(500), Vec::<usize>::new());
        assert!(h.bracket_of(3) < h.brackets());
        // Invalid plans never loop or prune.
        assert_eq!(hyperband(1, 1, 27).brackets(), 1);
        assert_eq!(hyperband(1, 1, 27).rungs(0), Vec::<usize>::new());
        assert_eq!(asha(0, 3, 27).rungs(0), Vec::<usize>::new());
    }

    #[test]
    fn bracket_of_first_assignments_match_hand_computation() {
        let h = hyperband(1, 3, 27);
        // n_b = [27, 12, 6, 4]; c = counts so far; pick the least c_b / n_b,
        // ties to the lower b.
        //  0-3: all 0 -> 0, then 1, 2, 3 (each tie broken low).   c = [1,1,1,1]
        //  4: 1/27 least -> 0; 5: 2/27 < 1/12 -> 0.              c = [3,1,1,1]
        //  6: 1/12 < 3/27 -> 1; 7: 3/27 -> 0; 8: 4/27 < 1/6 -> 0. c = [5,2,1,1]
        //  9: 5/27 > 2/12 = 1/6 tie with b2 -> 1.                 c = [5,3,1,1]
        // 10: 1/6 -> 2; 11: 5/27 -> 0; 12: 6/27 -> 0.             c = [7,3,2,1]
        // 13: 3/12 = 1/4 ties b3 -> 1; 14: 1/4 -> 3.              c = [7,4,2,2]
        // 15: 7/27 -> 0; 16: 8/27 -> 0; 17: 9/27 = 4/12 = 2/6 tie -> 0.
        // 18: 4/12 -> 1; 19: 2/6 -> 2; 20: 10/27 -> 0; 21: 11/27 -> 0;
        // 22: 5/12 < 12/27 -> 1.
        let expected = [
            0, 1, 2, 3, 0, 0, 1, 0, 0, 1, 2, 0, 0, 1, 3, 0, 0, 0, 1, 2, 0, 0, 1,
        ];
        let got: Vec<usize> = (0..expected.len()).map(|i| h.bracket_of(i)).collect();
        assert_eq!(got, expected);
        // ASHA: always bracket 0.
        assert!((0..50).all(|i| asha(1, 3, 27).bracket_of(i) == 0));
    }

    #[test]
    fn bracket_of_long_run_shares_match_bracket_sizes() {
        for h in [
            hyperband(1, 3, 27),
            hyperband(2, 2, 16),
            hyperband(1, 2, 16),
            hyperband(1, 3, 100),
            hyperband(1, 4, 64),
        ] {
            let sizes = h.bracket_sizes();
            let period: u128 = sizes.iter().sum();
            let mut counts = vec![0u128; sizes.len()];
            for i in 0..3 * period as usize {
                let b = h.bracket_of(i);
                assert!(b < h.brackets());
                counts[b] += 1;
                let n = i as u128 + 1;
                for (c, s) in counts.iter().zip(&sizes) {
                    // Never a whole trial ahead of its share n * s / period:
                    // c < n * s / period + 1.
                    assert!(c * period < n * s + period, "{h:?} after {n}: {counts:?}");
                    // Hence never more than (brackets - 1) behind it.
                    assert!(n * s < (c + sizes.len() as u128 - 1) * period);
                }
                if n.is_multiple_of(period) {
                    // Exactly the bracket sizes every period.
                    let m = n / period;
                    let want: Vec<u128> = sizes.iter().map(|s| s * m).collect();
                    assert_eq!(counts, want, "{h:?} after {n}");
                }
                // Periodic with period sum(n).
                assert_eq!(h.bracket_of(i), h.bracket_of(i + period as usize));
            }
        }
    }

    /// Nine trials, ASHA min 1, eta 3, max 27 (rungs 1, 3, 9), maximize, in
    /// rounds: all at rung 1, then the survivors at rung 3, then at rung 9.
    fn synchronous_script() -> Vec<Step> {
        let rung1 = [0.5, 0.3, 0.7, 0.6, 0.8, 0.2, 0.75, 0.65, 0.9];
        let mut steps: Vec<Step> = rung1
            .iter()
            .enumerate()
            .map(|(t, &v)| (t, at(1, &[(1, v)])))
            .collect();
        for (t, v) in [(0, 0.55), (2, 0.72), (4, 0.70), (6, 0.80), (8, 0.78)] {
            steps.push((t, at(3, &[(1, rung1[t]), (3, v)])));
        }
        for (t, v) in [(0, 0.6), (2, 0.7), (6, 0.65)] {
            steps.push((t, at(9, &[(1, rung1[t]), (9, v)])));
        }
        steps
    }

    /// The decisions of [`synchronous_script`], by hand (n values at the rung
    /// including this one, keep k = max(1, n / 3), "better" = strictly higher
    /// earlier values; continue iff better < k).
    fn synchronous_expected() -> Vec<(usize, usize, Decision)> {
        vec![
            // Rung 1.
            (0, 1, Continue), // 0.5:  n=1 k=1, better 0
            (1, 1, Prune),    // 0.3:  n=2 k=1, better {0.5}
            (2, 1, Continue), // 0.7:  n=3 k=1, better 0
            (3, 1, Prune),    // 0.6:  n=4 k=1, better {0.7}
            (4, 1, Continue), // 0.8:  n=5 k=1, better 0
            (5, 1, Prune),    // 0.2:  n=6 k=2, better {.5,.7,.6,.8}
            (6, 1, Continue), // 0.75: n=7 k=2, better {0.8}
            (7, 1, Prune),    // 0.65: n=8 k=2, better {.7,.8,.75}
            (8, 1, Continue), // 0.9:  n=9 k=3, better 0
            // Rung 3: survivors 0, 2, 4, 6, 8.
            (0, 3, Continue), // 0.55: n=1
            (2, 3, Continue), // 0.72: n=2 k=1, better 0
            (4, 3, Prune),    // 0.70: n=3 k=1, better {0.72}
            (6, 3, Continue), // 0.80: n=4 k=1, better 0
            (8, 3, Prune),    // 0.78: n=5 k=1, better {0.80}
            // Rung 9: survivors 0, 2, 6.
            (0, 9, Continue), // 0.6:  n=1
            (2, 9, Continue), // 0.7:  n=2 k=1, better 0
            (6, 9, Prune),    // 0.65: n=3 k=1, better {0.7}
        ]
    }

    #[test]
    fn synchronous_rounds_match_hand_computation() {
        let mut a = Asha::new(asha(1, 3, 27), true);
        let out = replay(&mut a, &synchronous_script());
        assert!(out.iter().all(|o| o.len() == 1));
        assert_eq!(decisions(a.records()), synchronous_expected());
        assert_eq!(a.pruned_at(1), Some(1));
        assert_eq!(a.pruned_at(4), Some(3));
        assert_eq!(a.pruned_at(6), Some(9));
        assert_eq!(a.pruned_at(0), None);
        assert_eq!(a.records()[11].value, 0.70);
        assert!(a.records().iter().all(|r| r.bracket == 0));
    }

    /// Interleaved arrivals, ASHA min 1, eta 3, max 27 (rungs 1, 3, 9),
    /// maximize.
    fn asynchronous_script() -> Vec<Step> {
        vec![
            (5, at(1, &[(1, 0.6)])),
            (0, at(1, &[(1, 0.4)])),
            // Trial 5 reaches rung 3 before trial 2 reaches rung 1.
            (5, at(3, &[(1, 0.6), (3, 0.7)])),
            (2, at(1, &[(1, 0.5)])),
            // Not polled for a while: rungs 1 and 3 at once.
            (3, at(3, &[(1, 0.9), (3, 0.75)])),
            // All three rungs at once, but pruned at the first.
            (1, at(9, &[(1, 0.3), (3, 0.95), (9, 0.99)])),
            (4, at(9, &[(1, 0.7), (3, 0.72), (9, 0.99)])),
            (5, at(9, &[(1, 0.6), (3, 0.7), (9, 0.85)])),
            (3, at(9, &[(1, 0.9), (3, 0.75), (9, 0.8)])),
            (6, at(4, &[(1, 0.65), (3, 0.8)])),
            (7, at(3, &[(1, 0.8), (3, 0.74)])),
            (8, at(3, &[(1, 0.75), (3, 0.76)])),
        ]
    }

    /// What each call of [`asynchronous_script`] returns, by hand.
    fn asynchronous_expected() -> Vec<Vec<(usize, usize, Decision)>> {
        vec![
            // Rung 1 so far: {}. 0.6: n=1 -> continue.
            vec![(5, 1, Continue)],
            // Rung 1: {0.6}. 0.4: n=2 k=1, better {0.6} -> prune.
            vec![(0, 1, Prune)],
            // Rung 3: {}. 0.7: n=1 -> continue.
            vec![(5, 3, Continue)],
            // Rung 1: {0.6, 0.4}. 0.5: n=3 k=1, better {0.6} -> prune.
            vec![(2, 1, Prune)],
            // Rung 1: {0.6, 0.4, 0.5}. 0.9: n=4 k=1, better {} -> continue.
            // Rung 3: {0.7}. 0.75: n=2 k=1, better {} -> continue.
            vec![(3, 1, Continue), (3, 3, Continue)],
            // Rung 1: {.6, .4, .5, .9}. 0.3: n=5 k=1, better 4 -> prune; stop.
            vec![(1, 1, Prune)],
            // Rung 1: {.6, .4, .5, .9, .3}. 0.7: n=6 k=2, better {0.9} -> continue.
            // Rung 3: {0.7, 0.75}. 0.72: n=3 k=1, better {0.75} -> prune; stop.
            vec![(4, 1, Continue), (4, 3, Prune)],
            // Rung 9: {}. 0.85: n=1 -> continue (rungs 1 and 3 already decided).
            vec![(5, 9, Continue)],
            // Rung 9: {0.85}. 0.8: n=2 k=1, better {0.85} -> prune.
            vec![(3, 9, Prune)],
            // Rung 1: {.6, .4, .5, .9, .3, .7}. 0.65: n=7 k=2, better {.9, .7} -> prune.
            vec![(6, 1, Prune)],
            // Rung 1: 7 earlier. 0.8: n=8 k=2, better {0.9} -> continue.
            // Rung 3: {.7, .75, .72}. 0.74: n=4 k=1, better {0.75} -> prune.
            vec![(7, 1, Continue), (7, 3, Prune)],
            // Rung 1: 8 earlier. 0.75: n=9 k=3, better {0.9, 0.8} -> continue.
            // Rung 3: {.7, .75, .72, .74}. 0.76: n=5 k=1, better {} -> continue.
            vec![(8, 1, Continue), (8, 3, Continue)],
        ]
    }

    #[test]
    fn asynchronous_arrivals_match_hand_computation() {
        let mut a = Asha::new(asha(1, 3, 27), true);
        let out = replay(&mut a, &asynchronous_script());
        let got: Vec<_> = out.iter().map(|o| decisions(o)).collect();
        assert_eq!(got, asynchronous_expected());
        // The records are the returned ones, in order.
        let all: Vec<RungRecord> = out.into_iter().flatten().collect();
        assert_eq!(a.records(), all.as_slice());
        assert_eq!(a.pruned_at(4), Some(3));
        assert_eq!(a.pruned_at(3), Some(9));
        assert_eq!(a.pruned_at(5), None);
        assert_eq!(a.pruned_at(8), None);
        assert_eq!(a.pruned_at(99), None);
    }

    #[test]
    fn arrival_order_changes_decisions() {
        // The same two values at rung 1, in the two orders.
        let mut a = Asha::new(asha(1, 3, 27), true);
        assert_eq!(decisions(&a.observe(0, &[0.4])), vec![(0, 1, Continue)]);
        assert_eq!(decisions(&a.observe(5, &[0.6])), vec![(5, 1, Continue)]);
        let mut b = Asha::new(asha(1, 3, 27), true);
        assert_eq!(decisions(&b.observe(5, &[0.6])), vec![(5, 1, Continue)]);
        assert_eq!(decisions(&b.observe(0, &[0.4])), vec![(0, 1, Prune)]);
    }

    #[test]
    fn ties_continue() {
        let mut a = Asha::new(asha(1, 3, 27), true);
        // n = 2..=4, k = 1: the best so far, 0.5, is not strictly better.
        for t in 0..4 {
            assert_eq!(decisions(&a.observe(t, &[0.5])), vec![(t, 1, Continue)]);
        }
        assert_eq!(decisions(&a.observe(4, &[0.4999])), vec![(4, 1, Prune)]);
    }

    #[test]
    fn minimize_mirrors_maximize() {
        // A small direct check: lower is better.
        let mut a = Asha::new(asha(1, 3, 27), false);
        assert_eq!(decisions(&a.observe(0, &[0.5])), vec![(0, 1, Continue)]);
        assert_eq!(decisions(&a.observe(1, &[0.6])), vec![(1, 1, Prune)]);
        assert_eq!(decisions(&a.observe(2, &[0.4])), vec![(2, 1, Continue)]);
        // Both scripts with negated values give the same decisions.
        for (script, expected) in [
            (synchronous_script(), synchronous_expected()),
            (
                asynchronous_script(),
                asynchronous_expected().into_iter().flatten().collect(),
            ),
        ] {
            let mut max = Asha::new(asha(1, 3, 27), true);
            replay(&mut max, &script);
            let mut min = Asha::new(asha(1, 3, 27), false);
            replay(&mut min, &negated(&script));
            assert_eq!(decisions(min.records()), expected);
            assert_eq!(decisions(min.records()), decisions(max.records()));
            for (lo, hi) in min.records().iter().zip(max.records()) {
                assert_eq!(lo.value, -hi.value);
            }
            // And minimizing the original values does not.
            let mut wrong = Asha::new(asha(1, 3, 27), false);
            replay(&mut wrong, &script);
            assert_ne!(decisions(wrong.records()), expected);
        }
    }

    /// Hyperband min 1, eta 3, max 27: trials 0..=6 go to brackets
    /// 0, 1, 2, 3, 0, 0, 1 with rungs [1, 3, 9], [3, 9], [9], [].
    fn hyperband_script() -> Vec<Step> {
        vec![
            (0, at(3, &[(1, 0.5), (3, 0.9)])),
            (1, at(3, &[(1, 0.99), (3, 0.1)])),
            (4, at(1, &[(1, 0.05)])),
            (6, at(3, &[(1, 0.0), (3, 0.05)])),
            (2, at(9, &[(9, 0.01)])),
            (3, vec![0.0; 27]),
            (5, at(3, &[(1, 0.6), (3, 0.2)])),
            (0, at(9, &[(1, 0.5), (3, 0.9), (9, 0.005)])),
        ]
    }

    #[test]
    fn hyperband_brackets_do_not_compete() {
        let h = hyperband(1, 3, 27);
        let brackets: Vec<usize> = (0..7).map(|i| h.bracket_of(i)).collect();
        assert_eq!(brackets, vec![0, 1, 2, 3, 0, 0, 1]);
        let mut a = Asha::new(h, true);
        let out = replay(&mut a, &hyperband_script());
        let got: Vec<Vec<(usize, usize, Decision)>> = out.iter().map(|o| decisions(o)).collect();
        let expected = vec![
            // Bracket 0, rungs 1 and 3 empty: continue at both.
            vec![(0, 1, Continue), (0, 3, Continue)],
            // Bracket 1 (rungs 3, 9): alone at rung 3 with 0.1, although
            // trial 0 had 0.9 there in bracket 0 -> continue.
            vec![(1, 3, Continue)],
            // Bracket 0 rung 1: {0.5}. 0.05 -> prune.
            vec![(4, 1, Prune)],
            // Bracket 1 rung 3: {0.1}. 0.05 -> prune (rung 1 is not its rung).
            vec![(6, 3, Prune)],
            // Bracket 2 (rung 9): alone -> continue.
            vec![(2, 9, Continue)],
            // Bracket 3: no rungs, nothing to decide.
            vec![],
            // Bracket 0 rung 1: {0.5, 0.05}. 0.6 -> continue.
            // Bracket 0 rung 3: {0.9}. 0.2 -> prune.
            vec![(5, 1, Continue), (5, 3, Prune)],
            // Bracket 0 rung 9: alone with 0.005, although trial 2 had 0.01
            // there in bracket 2 -> continue.
            vec![(0, 9, Continue)],
        ];
        assert_eq!(got, expected);
        for r in a.records() {
            assert_eq!(r.bracket, a.plan().bracket_of(r.trial));
        }
        assert_eq!(a.pruned_at(3), None);
        assert_eq!(a.pruned_at(6), Some(3));
    }

    #[test]
    fn restore_then_observe_matches_uninterrupted_run() {
        for (p, script) in [
            (asha(1, 3, 27), asynchronous_script()),
            (asha(1, 3, 27), synchronous_script()),
            (hyperband(1, 3, 27), hyperband_script()),
        ] {
            let mut whole = Asha::new(p.clone(), true);
            let whole_out = replay(&mut whole, &script);
            for split in 0..=script.len() {
                let mut first = Asha::new(p.clone(), true);
                replay(&mut first, &script[..split]);
                // Through the journal's JSON lines and back.
                let lines: Vec<String> = first
                    .records()
                    .iter()
                    .map(|r| serde_json::to_string(r).expect("serialize"))
                    .collect();
                let read: Vec<RungRecord> = lines
                    .iter()
                    .map(|l| serde_json::from_str(l).expect("deserialize"))
                    .collect();
                assert_eq!(read.as_slice(), first.records());
                let mut resumed = Asha::restore(p.clone(), true, read);
                let rest = replay(&mut resumed, &script[split..]);
                assert_eq!(rest.as_slice(), &whole_out[split..], "split at {split}");
                assert_eq!(resumed.records(), whole.records());
                for t in 0..10 {
                    assert_eq!(resumed.pruned_at(t), whole.pruned_at(t));
                }
            }
        }
    }

    #[test]
    fn pruned_trial_gets_no_more_decisions() {
        let mut a = Asha::new(asha(1, 3, 27), true);
        a.observe(0, &[0.9]);
        assert_eq!(decisions(&a.observe(1, &[0.1])), vec![(1, 1, Prune)]);
        // Better values later, more epochs: nothing.
        assert!(a.observe(1, &[0.1, 1.0, 1.0]).is_empty());
        assert!(a
            .observe(1, &at(26, &[(1, 0.1), (3, 5.0), (9, 5.0)]))
            .is_empty());
        assert_eq!(a.records().len(), 2);
        assert_eq!(a.pruned_at(1), Some(1));
        // Also after a restore.
        let mut b = Asha::restore(asha(1, 3, 27), true, a.records().to_vec());
        assert!(b.observe(1, &[0.1, 1.0, 1.0]).is_empty());
        assert_eq!(b.records().len(), 2);
    }

    #[test]
    fn rung_is_never_decided_twice() {
        let mut a = Asha::new(asha(1, 3, 27), true);
        assert_eq!(decisions(&a.observe(0, &[0.9])), vec![(0, 1, Continue)]);
        assert_eq!(decisions(&a.observe(1, &[0.8])), vec![(1, 1, Prune)]);
        // The same epochs again, even with other values: nothing new.
        assert!(a.observe(0, &[0.9]).is_empty());
        assert!(a.observe(0, &[0.0]).is_empty());
        // Fewer epochs than already decided: nothing.
        assert!(a.observe(0, &[]).is_empty());
        // Epoch 2 is not a rung: nothing.
        assert!(a.observe(0, &[0.9, 0.9]).is_empty());
        // Epoch 3 is: only rung 3 is decided, rung 1 is kept.
        assert_eq!(
            decisions(&a.observe(0, &[0.0, 0.0, 0.5])),
            vec![(0, 3, Continue)]
        );
        assert!(a.observe(0, &[0.0, 0.0, 0.5, 0.5]).is_empty());
        let pairs: Vec<(usize, usize)> = a.records().iter().map(|r| (r.trial, r.epoch)).collect();
        assert_eq!(pairs, vec![(0, 1), (1, 1), (0, 3)]);
        // A restored duplicate record adds nothing to the competing values.
        let mut dup = a.records().to_vec();
        dup.push(dup[0].clone());
        let mut b = Asha::restore(asha(1, 3, 27), true, dup);
        assert_eq!(b.records().len(), 4);
        assert!(b.observe(0, &[0.9, 0.9, 0.5]).is_empty());
        // Rung 1: {0.9, 0.8}. 0.95: n=3 k=1, better {} -> continue.
        assert_eq!(decisions(&b.observe(2, &[0.95])), vec![(2, 1, Continue)]);
        // Rung 1: {0.9, 0.8, 0.95}. 0.85: n=4 k=1, better {0.9, 0.95} -> prune.
        assert_eq!(decisions(&b.observe(3, &[0.85])), vec![(3, 1, Prune)]);
        // Rung 1: {0.9, 0.8, 0.95, 0.85}. 0.91: n=5 k=1, better {0.95} ->
        // prune. (Had the duplicate 0.9 counted: n=6 k=2 -> continue.)
        assert_eq!(decisions(&b.observe(4, &[0.91])), vec![(4, 1, Prune)]);
    }

    #[test]
    fn nan_is_pruned_and_counts_as_reached() {
        // Alone at a rung, maximize and minimize.
        for maximize in [true, false] {
            let mut a = Asha::new(asha(1, 2, 4), maximize);
            assert_eq!(decisions(&a.observe(0, &[f64::NAN])), vec![(0, 1, Prune)]);
            assert_eq!(a.pruned_at(0), Some(1));
        }
        // Rungs 1, 2 (eta 2, max 4), minimize.
        let mut a = Asha::new(asha(1, 2, 4), false);
        assert_eq!(decisions(&a.observe(0, &[f64::NAN])), vec![(0, 1, Prune)]);
        // {NaN}. 0.1: n=2 k=1, NaN is not better -> continue.
        assert_eq!(decisions(&a.observe(1, &[0.1])), vec![(1, 1, Continue)]);
        // {NaN, 0.1}. 0.2: n=3 k=1, better {0.1} -> prune.
        assert_eq!(decisions(&a.observe(2, &[0.2])), vec![(2, 1, Prune)]);
        // {NaN, 0.1, 0.2}. 0.15: n=4 k=2, better {0.1} -> continue. Without
        // the NaN counted, n=3 k=1 would prune it.
        assert_eq!(decisions(&a.observe(3, &[0.15])), vec![(3, 1, Continue)]);
        // NaN at a later rung after a continue.
        assert_eq!(
            decisions(&a.observe(1, &[0.1, f64::NAN])),
            vec![(1, 2, Prune)]
        );
        // Infinities are ordinary values: +inf is worst when minimizing.
        let mut b = Asha::new(asha(1, 2, 4), false);
        b.observe(0, &[1.0]);
        assert_eq!(
            decisions(&b.observe(1, &[f64::INFINITY])),
            vec![(1, 1, Prune)]
        );
        assert_eq!(
            decisions(&b.observe(2, &[f64::NEG_INFINITY])),
            vec![(2, 1, Continue)]
        );
    }

    #[test]
    fn records_serialize_for_the_journal() {
        assert_eq!(
            serde_json::to_string(&Decision::Continue).expect("serialize"),
            "\"continue\""
        );
        assert_eq!(
            serde_json::to_string(&Decision::Prune).expect("serialize"),
            "\"prune\""
        );
        let record = RungRecord {
            trial: 3,
            bracket: 1,
            epoch: 9,
            value: 0.25,
            decision: Decision::Prune,
        };
        let line = serde_json::to_string(&record).expect("serialize");
        assert_eq!(
            line,
            r#"{"trial":3,"bracket":1,"epoch":9,"value":0.25,"decision":"prune"}"#
        );
        // Non-finite values read back as themselves.
        for (value, text) in [
            (f64::NAN, "\"NaN\""),
            (f64::INFINITY, "\"inf\""),
            (f64::NEG_INFINITY, "\"-inf\""),
        ] {
            let r = RungRecord {
                value,
                ..record.clone()
            };
            let line = serde_json::to_string(&r).expect("serialize");
            assert!(line.contains(&format!("\"value\":{text}")), "{line}");
            let back: RungRecord = serde_json::from_str(&line).expect("deserialize");
            assert_eq!(back.value.is_nan(), value.is_nan());
            if !value.is_nan() {
                assert_eq!(back.value, value);
            }
        }
        // Integers and null read as numbers and NaN; other strings fail.
        let back: RungRecord = serde_json::from_str(
            r#"{"trial":3,"bracket":1,"epoch":9,"value":2,"decision":"continue"}"#,
        )
        .expect("deserialize");
        assert_eq!(back.value, 2.0);
        let back: RungRecord = serde_json::from_str(
            r#"{"trial":3,"bracket":1,"epoch":9,"value":null,"decision":"continue"}"#,
        )
        .expect("deserialize");
        assert!(back.value.is_nan());
        assert!(serde_json::from_str::<RungRecord>(
            r#"{"trial":3,"bracket":1,"epoch":9,"value":"high","decision":"continue"}"#,
        )
        .is_err());
    }
}
