//! `strategy = "tpe"`: the Tree-structured Parzen Estimator (Bergstra et
//! al. 2011, "Algorithms for Hyper-Parameter Optimization"). Where the
//! paper leaves a choice open, this follows Optuna's univariate
//! `TPESampler` with its defaults (`consider_prior = True`,
//! `prior_weight = 1.0`, `consider_magic_clip = True`,
//! `consider_endpoints = False`, `n_ei_candidates = 24`).
//!
//! # The algorithm
//!
//! The first trials (fewer than `n_startup` ranked ones in the history) are
//! plain random draws. After that, a new trial is proposed from the earlier
//! ones:
//!
//! 1. The history is ranked best first and split into a *good* group, the
//!    first [`n_good`] of the ranked trials (Optuna's default `gamma`:
//!    `min(ceil(0.1 n), 25)`), and a *bad* group, all the others
//!    ([`split`]).
//! 2. Each axis is proposed on its own, in draw order (an axis after the
//!    axes its conditions name). The case of the axis that applies to the
//!    values proposed so far is found; with none, the axis is inactive and
//!    its key is left out of the trial. Only earlier trials that have the
//!    key *and* in which the same case applied are used, so a learning rate
//!    drawn from the range of `sgd` never informs the range of `adam`.
//! 3. A density `l(x)` is fitted to the good values and `g(x)` to the bad
//!    ones (each with a prior component); `n_candidates` candidates are
//!    drawn from `l(x)` and the one with the largest `l(x) / g(x)` (the
//!    expected improvement, up to a monotone transform) is kept. An axis
//!    with no good values falls back to a random draw.
//!
//! The estimators are described at [`Parzen`] (uniform, log-uniform and
//! integer axes) and [`Categorical`] (choices). Proposed floats are rounded
//! to 6 significant digits, as every drawn float of a sweep is.
//!
//! # Pruned and pending trials
//!
//! A trial stopped early by ASHA or Hyperband counts at the rung it
//! reached: it is ranked after every complete trial, the deeper ones (more
//! epochs) first, then by their loss at the rung. So pruned trials only
//! join the good group when too few trials have finished.
//!
//! A trial that has started but not finished (running, or its result
//! unknown) is a *constant liar*: it never counts as good and always counts
//! as bad, so `g(x)` is high around it and trials proposed while it runs
//! spread out instead of piling onto the same point. Pending trials do not
//! count towards `n_startup` nor towards the size of the good group.
//!
//! # Determinism
//!
//! All randomness comes from the generator passed to [`propose`]: the same
//! history and the same generator state give the same proposal.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::f64::consts::{FRAC_2_SQRT_PI, PI, SQRT_2};

use rand::Rng;
use rand_distr::StandardNormal;

use crate::plan::{Distribution, RandomAxis, TpePlan};

/// How one earlier trial is seen by the estimator.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Finished; `loss` is the ranking value with lower better (the caller negates a maximized metric).
    Complete { loss: f64 },
    /// Stopped early at a rung after `epochs` epochs, with `loss` its value there (lower better).
    Pruned { epochs: usize, loss: f64 },
    /// Started but not finished (running, or its result unknown): the constant liar.
    Pending,
}

/// One earlier trial: its values (absent keys were inactive) and how it
/// went.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub params: BTreeMap<String, toml::Value>,
    pub outcome: Outcome,
}

/// The settings of the estimator (`[sweep.tpe]`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// Ranked (complete or pruned) trials needed before the estimator is
    /// used; until then every value is a random draw.
    pub n_startup: usize,
    /// Candidates drawn from `l(x)` per axis, of which the best is kept (at
    /// least one is drawn).
    pub n_candidates: usize,
}

impl From<TpePlan> for Settings {
    fn from(plan: TpePlan) -> Self {
        Settings {
            n_startup: plan.n_startup,
            n_candidates: plan.n_candidates,
        }
    }
}

/// How many of n ranked observations form the "good" group: Optuna's default gamma,
/// min(ceil(0.1 n), 25).
pub fn n_good(n: usize) -> usize {
    n.div_ceil(10).min(25)
}

/// Rank observations best first and split them into (good, bad) index lists:
/// Complete trials by loss (NaN last among them), then Pruned trials — deeper first
/// (more epochs), then by loss — then Pending trials. The first n_good(n_ranked) of the
/// Complete+Pruned ones are good, where Pending ones never count as good and always count
/// as bad (the constant-liar rule for parallel trials: a running trial's point is treated as
/// a bad result, so parallel proposals spread out instead of piling onto one point).
///
/// Both lists are in rank order; ties keep the order of `obs`.
pub fn split(obs: &[Observation]) -> (Vec<usize>, Vec<usize>) {
    let mut complete: Vec<(usize, f64)> = Vec::new();
    let mut pruned: Vec<(usize, usize, f64)> = Vec::new();
    let mut pending: Vec<usize> = Vec::new();
    for (i, o) in obs.iter().enumerate() {
        match o.outcome {
            Outcome::Complete { loss } => complete.push((i, loss)),
            Outcome::Pruned { epochs, loss } => pruned.push((i, epochs, loss)),
            Outcome::Pending => pending.push(i),
        }
    }
    complete.sort_by(|a, b| by_loss(a.1, b.1));
    pruned.sort_by(|a, b| b.1.cmp(&a.1).then(by_loss(a.2, b.2)));
    let ranked: Vec<usize> = complete
        .iter()
        .map(|c| c.0)
        .chain(pruned.iter().map(|p| p.0))
        .collect();
    let n = n_good(ranked.len());
    let good = ranked[..n].to_vec();
    let bad = ranked[n..].iter().copied().chain(pending).collect();
    (good, bad)
}

/// Lower loss first, NaN after every number.
fn by_loss(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => a.total_cmp(&b),
    }
}

/// Propose the values of a new trial. `axes` are in draw order (an axis after the axes its
/// conditions name). With fewer than `settings.n_startup` Complete or Pruned observations,
/// every value is a plain random draw (`super::sample`). Otherwise, per axis in order: find the
/// case that applies given the values proposed so far (`axis.case(&params)`); skip the axis if
/// none (the key is absent from the trial: inactive); else take the values of that key from the
/// good and bad observations **whose own applicable case of this axis has the same case index**
/// (an observation lacking the key is ignored for this axis), fit l(x) to the good values and g(x)
/// to the bad ones (each with a prior component, as Optuna), draw `n_candidates` candidates from
/// l(x), and keep the one maximizing l(x)/g(x) (log l - log g).
///
/// An axis with no usable good values (every good observation lacked the
/// key, was in another case, or held a value the distribution cannot
/// take) is a plain random draw.
pub fn propose(
    axes: &[RandomAxis],
    history: &[Observation],
    settings: &Settings,
    rng: &mut impl Rng,
) -> BTreeMap<String, toml::Value> {
    let ranked = history
        .iter()
        .filter(|o| !matches!(o.outcome, Outcome::Pending))
        .count();
    let groups = (ranked >= settings.n_startup).then(|| split(history));
    let mut params = BTreeMap::new();
    for axis in axes {
        let Some((case, c)) = axis.case(&params) else {
            continue;
        };
        let dist = &c.distribution;
        let proposed = groups.as_ref().and_then(|(good, bad)| {
            let below = values_of(axis, case, history, good);
            if below.is_empty() {
                return None;
            }
            let above = values_of(axis, case, history, bad);
            suggest(dist, &below, &above, settings.n_candidates.max(1), rng)
        });
        let value = match proposed {
            Some(v) => v,
            None => super::sample(dist, rng),
        };
        params.insert(axis.key.clone(), value);
    }
    params
}

/// The values of `axis` in the observations `which` whose applicable case
/// of the axis is `case`.
fn values_of<'a>(
    axis: &RandomAxis,
    case: usize,
    history: &'a [Observation],
    which: &[usize],
) -> Vec<&'a toml::Value> {
    which
        .iter()
        .filter_map(|&i| {
            let params = &history[i].params;
            let value = params.get(&axis.key)?;
            (axis.case(params).map(|(j, _)| j) == Some(case)).then_some(value)
        })
        .collect()
}

/// The best of `n` candidates drawn from l(x) fitted to `below`, scored by
/// log l(x) - log g(x) with g fitted to `above`; `None` when no value of
/// `below` fits the distribution (not a number, or not one of the choices).
/// Values of `above` that do not fit are left out.
fn suggest(
    dist: &Distribution,
    below: &[&toml::Value],
    above: &[&toml::Value],
    n: usize,
    rng: &mut impl Rng,
) -> Option<toml::Value> {
    match dist {
        Distribution::Uniform { low, high } => {
            let (low, high) = (*low, *high);
            let (l, g) = fit_pair(below, above, low, high, Some)?;
            best_of(n, rng, |rng| {
                let x = round_sig(l.sample(rng)).clamp(low, high);
                (l.log_pdf(x) - g.log_pdf(x), toml::Value::Float(x))
            })
        }
        Distribution::LogUniform { low, high } => {
            let (low, high) = (*low, *high);
            let (a, b) = (low.ln(), high.ln());
            let (l, g) = fit_pair(below, above, a, b, |x| (x > 0.0).then(|| x.ln()))?;
            best_of(n, rng, |rng| {
                let x = round_sig(l.sample(rng).exp()).clamp(low, high);
                let z = x.ln().clamp(a, b);
                (l.log_pdf(z) - g.log_pdf(z), toml::Value::Float(x))
            })
        }
        Distribution::Int { low, high } => {
            let (low, high) = (*low, *high);
            let (a, b) = (low as f64 - 0.5, high as f64 + 0.5);
            let (l, g) = fit_pair(below, above, a, b, |x| Some(x.round()))?;
            best_of(n, rng, |rng| {
                let k = (l.sample(rng).round() as i64).clamp(low, high);
                let (lo, hi) = (k as f64 - 0.5, k as f64 + 0.5);
                (
                    l.log_mass(lo, hi) - g.log_mass(lo, hi),
                    toml::Value::Integer(k),
                )
            })
        }
        Distribution::Choice(values) => {
            let indices = |vs: &[&toml::Value]| -> Vec<usize> {
                vs.iter()
                    .filter_map(|v| values.iter().position(|c| c == *v))
                    .collect()
            };
            let good = indices(below);
            if good.is_empty() {
                return None;
            }
            let l = Categorical::fit(&good, values.len())?;
            let g = Categorical::fit(&indices(above), values.len())?;
            let k = best_of(n, rng, |rng| {
                let k = l.sample(rng);
                (l.log_p(k) - g.log_p(k), k)
            })?;
            values.get(k).cloned()
        }
    }
}

/// The candidate with the highest score among `n` from `draw` (the first
/// of equal ones); a NaN score never wins over a number.
fn best_of<R: Rng, T>(
    n: usize,
    rng: &mut R,
    mut draw: impl FnMut(&mut R) -> (f64, T),
) -> Option<T> {
    let mut best: Option<(f64, T)> = None;
    for _ in 0..n {
        let (score, value) = draw(rng);
        let better = match &best {
            None => true,
            Some((s, _)) => score > *s || (s.is_nan() && !score.is_nan()),
        };
        if better {
            best = Some((score, value));
        }
    }
    best.map(|(_, v)| v)
}

/// l(x) fitted to the numbers among `below` and g(x) to those among
/// `above`, on `[low, high]`, each number first mapped by `f` (which may
/// drop it); `None` when no good number is left.
fn fit_pair(
    below: &[&toml::Value],
    above: &[&toml::Value],
    low: f64,
    high: f64,
    f: impl Fn(f64) -> Option<f64>,
) -> Option<(Parzen, Parzen)> {
    let numbers = |vs: &[&toml::Value]| -> Vec<f64> {
        vs.iter().filter_map(|v| number(v)).filter_map(&f).collect()
    };
    let good = numbers(below);
    if good.is_empty() {
        return None;
    }
    Some((
        Parzen::fit(&good, low, high)?,
        Parzen::fit(&numbers(above), low, high)?,
    ))
}

/// A finite number from a float or integer value.
fn number(v: &toml::Value) -> Option<f64> {
    let x = match v {
        toml::Value::Float(x) => *x,
        toml::Value::Integer(i) => *i as f64,
        _ => return None,
    };
    x.is_finite().then_some(x)
}

/// Round a float to 6 significant digits, as the random draws of a sweep
/// are.
fn round_sig(v: f64) -> f64 {
    if v == 0.0 || !v.is_finite() {
        return v;
    }
    let digits = 6 - v.abs().log10().ceil() as i32;
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

/// The Parzen estimator of a numeric axis on `[low, high]`: an equally
/// weighted mixture of normal distributions truncated to `[low, high]`, one
/// centred on each observed value and one prior component centred on the
/// middle of the range with sigma `high - low` (Optuna's `prior_weight =
/// 1.0`; unlike Optuna, older observations are not weighted down once
/// there are more than 25).
///
/// Bandwidths follow Optuna's univariate rule: the centres, prior
/// included, are sorted, and each one's sigma is the larger of its
/// distances to its left and right neighbours, the range ends being the
/// outer neighbours of the first and last centre; with
/// `consider_endpoints = False` the first and last centre instead take the
/// distance to their one inner neighbour (when there are at least two
/// centres). Sigmas are then clipped to `[(high - low) / min(100, 1 + n),
/// high - low]`, n the number of components, prior included (the "magic
/// clip"), and the prior's sigma is set to `high - low`.
///
/// A log-uniform axis uses it on the logarithms of the values (the density
/// in log space: the Jacobian is the same for l and g and cancels in the
/// ratio). An integer axis from `low` to `high` uses it on `[low - 0.5,
/// high + 0.5]`; candidates are rounded to the nearest integer and clamped,
/// and each is scored by the probability of its unit interval `[k - 0.5, k
/// + 0.5]` (as Optuna scores quantized values), not by the density at `k`.
#[derive(Debug, Clone)]
struct Parzen {
    low: f64,
    high: f64,
    /// Component centres.
    mus: Vec<f64>,
    sigmas: Vec<f64>,
    /// Normalized weights.
    weights: Vec<f64>,
    /// Log of each component's untruncated mass within `[low, high]`.
    log_norms: Vec<f64>,
}

impl Parzen {
    /// The estimator of the values `xs` (clamped into `[low, high]`);
    /// `None` for an empty or non-finite range.
    fn fit(xs: &[f64], low: f64, high: f64) -> Option<Parzen> {
        let range = high - low;
        if !(range > 0.0 && range.is_finite()) {
            return None;
        }
        let prior_mu = 0.5 * (low + high);
        // The prior first, so a stable sort puts it before equal values
        // (numpy's searchsorted, as Optuna inserts it).
        let mut centres: Vec<(f64, bool)> = std::iter::once((prior_mu, true))
            .chain(
                xs.iter()
                    .filter(|x| x.is_finite())
                    .map(|x| (x.clamp(low, high), false)),
            )
            .collect();
        centres.sort_by(|a, b| a.0.total_cmp(&b.0));
        let n = centres.len();
        let mus: Vec<f64> = centres.iter().map(|c| c.0).collect();
        let at = |i: usize| -> f64 {
            // Positions with the range ends around: 0 is low, n + 1 is high.
            if i == 0 {
                low
            } else if i == n + 1 {
                high
            } else {
                mus[i - 1]
            }
        };
        let mut sigmas: Vec<f64> = (1..=n)
            .map(|i| (at(i) - at(i - 1)).max(at(i + 1) - at(i)))
            .collect();
        if n >= 2 {
            sigmas[0] = mus[1] - mus[0];
            sigmas[n - 1] = mus[n - 1] - mus[n - 2];
        }
        let min_sigma = range / (100f64).min(1.0 + n as f64);
        for (s, c) in sigmas.iter_mut().zip(&centres) {
            *s = if c.1 {
                range
            } else {
                s.clamp(min_sigma, range)
            };
        }
        let weights = vec![1.0 / n as f64; n];
        let log_norms = mus
            .iter()
            .zip(&sigmas)
            .map(|(m, s)| log_normal_mass((low - m) / s, (high - m) / s))
            .collect();
        Some(Parzen {
            low,
            high,
            mus,
            sigmas,
            weights,
            log_norms,
        })
    }

    /// One draw: a component by weight, then a draw of its truncated normal
    /// (by rejection: a centre lies in the range and sigma is at most its
    /// width, so at least a third of the normal's draws land in the range).
    fn sample(&self, rng: &mut impl Rng) -> f64 {
        let mut u: f64 = rng.random::<f64>();
        let mut i = self.weights.len() - 1;
        for (j, w) in self.weights.iter().enumerate() {
            if u < *w {
                i = j;
                break;
            }
            u -= w;
        }
        let (mu, sigma) = (self.mus[i], self.sigmas[i]);
        for _ in 0..1000 {
            let z: f64 = rng.sample(StandardNormal);
            let x = mu + sigma * z;
            if (self.low..=self.high).contains(&x) {
                return x;
            }
        }
        mu
    }

    /// Log density at `x` (clamped into the range).
    fn log_pdf(&self, x: f64) -> f64 {
        let x = x.clamp(self.low, self.high);
        log_sum_exp(self.components().map(|(w, mu, sigma, log_norm)| {
            let z = (x - mu) / sigma;
            w.ln() + log_std_normal_pdf(z) - sigma.ln() - log_norm
        }))
    }

    /// Log of the probability of `[a, b]`.
    fn log_mass(&self, a: f64, b: f64) -> f64 {
        let (a, b) = (a.max(self.low), b.min(self.high));
        log_sum_exp(self.components().map(|(w, mu, sigma, log_norm)| {
            w.ln() + log_normal_mass((a - mu) / sigma, (b - mu) / sigma) - log_norm
        }))
    }

    /// (weight, centre, sigma, log of the truncation mass) of each
    /// component.
    fn components(&self) -> impl Iterator<Item = (f64, f64, f64, f64)> + '_ {
        self.weights
            .iter()
            .zip(&self.mus)
            .zip(&self.sigmas)
            .zip(&self.log_norms)
            .map(|(((w, m), s), z)| (*w, *m, *s, *z))
    }
}

/// The estimator of a choice axis with `k` values: the probability of value
/// i is proportional to its count among the observations plus a prior of
/// `1 / k` (Optuna's `prior_weight = 1.0` spread evenly over the values).
#[derive(Debug, Clone)]
struct Categorical {
    /// Normalized probabilities.
    p: Vec<f64>,
}

impl Categorical {
    /// The estimator of the observed value indices `idx` (each below `k`);
    /// `None` when `k` is 0.
    fn fit(idx: &[usize], k: usize) -> Option<Categorical> {
        if k == 0 {
            return None;
        }
        let mut w = vec![1.0 / k as f64; k];
        for &i in idx {
            if let Some(x) = w.get_mut(i) {
                *x += 1.0;
            }
        }
        let total: f64 = w.iter().sum();
        Some(Categorical {
            p: w.iter().map(|x| x / total).collect(),
        })
    }

    fn sample(&self, rng: &mut impl Rng) -> usize {
        let mut u: f64 = rng.random::<f64>();
        for (i, p) in self.p.iter().enumerate() {
            if u < *p {
                return i;
            }
            u -= p;
        }
        self.p.len() - 1
    }

    fn log_p(&self, i: usize) -> f64 {
        self.p.get(i).map_or(f64::NEG_INFINITY, |p| p.ln())
    }
}

/// log(sum of exp(x)) without overflow; -inf for no terms.
fn log_sum_exp(xs: impl Iterator<Item = f64>) -> f64 {
    let xs: Vec<f64> = xs.collect();
    let max = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !max.is_finite() {
        return max;
    }
    max + xs.iter().map(|x| (x - max).exp()).sum::<f64>().ln()
}

/// Log density of the standard normal at `z`.
fn log_std_normal_pdf(z: f64) -> f64 {
    -0.5 * z * z - 0.5 * (2.0 * PI).ln()
}

/// Log of P(a < Z < b) for a standard normal Z: from `erf` when the
/// interval holds the mean, else from `erfc` on the side of the tail it
/// lies in, so tails keep their precision (relative error about 1e-4 at
/// worst, for narrow intervals, where the difference of two `erfc` values
/// magnifies theirs); an interval narrower than 1e-3 by its midpoint
/// density times its width, and one beyond the reach of `erfc` (about 26
/// standard deviations out) by the density at its end nearest the mean
/// over that end's distance from it (Mills' ratio).
fn log_normal_mass(a: f64, b: f64) -> f64 {
    let width = b - a;
    if width.is_nan() || width <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if width < 1e-3 {
        return log_std_normal_pdf(0.5 * (a + b)) + width.ln();
    }
    let m = if a >= 0.0 {
        0.5 * (erfc(a / SQRT_2) - erfc(b / SQRT_2))
    } else if b <= 0.0 {
        0.5 * (erfc(-b / SQRT_2) - erfc(-a / SQRT_2))
    } else {
        0.5 * (erf(b / SQRT_2) - erf(a / SQRT_2))
    };
    if m > 0.0 {
        return m.ln();
    }
    // Both ends far in one tail: the mass is about the density at the near
    // end over its distance from the mean, or times the width if narrower.
    let near = if a >= 0.0 { a } else { -b };
    log_std_normal_pdf(near) + width.min(1.0 / near).ln()
}

/// The error function: its Maclaurin series below 3 in absolute value
/// (absolute error about 1e-15), `1 - erfc` beyond.
fn erf(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    if x.abs() < 3.0 {
        erf_series(x)
    } else {
        (1.0 - erfc_chebyshev(x.abs())).copysign(x)
    }
}

/// The complementary error function 1 - erf(x): `1 - erf` from the series
/// below 0.5 (where erfc is above 0.47, so no precision is lost), else the
/// Numerical Recipes Chebyshev fit (relative error below 1.2e-7, which also
/// holds far in the tail).
fn erfc(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    if x < 0.5 {
        if x > -3.0 {
            1.0 - erf_series(x)
        } else {
            2.0 - erfc_chebyshev(-x)
        }
    } else {
        erfc_chebyshev(x)
    }
}

/// erf(x) = 2/sqrt(pi) * sum over n of (-1)^n x^(2n+1) / (n! (2n+1)); for
/// |x| < 3, where the largest term stays near 1e3 and cancellation costs
/// at most three of the sixteen digits.
fn erf_series(x: f64) -> f64 {
    let x2 = x * x;
    // term = (-1)^n x^(2n+1) / n!
    let mut term = x;
    let mut sum = x;
    for n in 1..200 {
        term *= -x2 / n as f64;
        let add = term / (2 * n + 1) as f64;
        sum += add;
        if add.abs() < 1e-17 * sum.abs() {
            break;
        }
    }
    FRAC_2_SQRT_PI * sum
}

/// erfc(x) for x >= 0 by the Chebyshev fit of Numerical Recipes (`erfcc`),
/// with relative error below 1.2e-7 everywhere.
fn erfc_chebyshev(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let ans = t * (-z * z + poly).exp();
    if x >= 0.0 {
        ans
    } else {
        2.0 - ans
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Condition, RandomCase};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn axis(key: &str, dist: Distribution) -> RandomAxis {
        RandomAxis {
            key: key.to_string(),
            cases: vec![RandomCase {
                when: vec![],
                distribution: dist,
            }],
        }
    }

    fn complete(params: &[(&str, toml::Value)], loss: f64) -> Observation {
        Observation {
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            outcome: Outcome::Complete { loss },
        }
    }

    fn num(p: &BTreeMap<String, toml::Value>, key: &str) -> f64 {
        number(&p[key]).expect("a number")
    }

    const SETTINGS: Settings = Settings {
        n_startup: 10,
        n_candidates: 24,
    };

    #[test]
    fn erf_matches_known_values() {
        for (x, want) in [
            (0.5, 0.520_499_877_8),
            (1.0, 0.842_700_792_9),
            (-2.0, -0.995_322_265_0),
            (3.0, 0.999_977_909_5),
            (0.0, 0.0),
            (0.01, 0.011_283_415_6),
            (2.9, 0.999_958_902_3),
        ] {
            let got = erf(x);
            assert!((got - want).abs() < 1e-7, "erf({x}) = {got}, want {want}");
        }
        for (x, want) in [
            (0.5, 0.479_500_122_2),
            (-1.0, 1.842_700_792_9),
            (5.0, 1.537_459_794_4e-12),
            (10.0, 2.088_487_583_8e-45),
        ] {
            let got = erfc(x);
            assert!(
                ((got - want) / want).abs() < 2e-7,
                "erfc({x}) = {got}, want {want}"
            );
        }
    }

    /// Simpson's rule of exp(f) over [a, b].
    fn integrate(f: impl Fn(f64) -> f64, a: f64, b: f64) -> f64 {
        let n = 20_000;
        let h = (b - a) / n as f64;
        (0..=n)
            .map(|i| {
                let w = if i == 0 || i == n {
                    1.0
                } else if i % 2 == 1 {
                    4.0
                } else {
                    2.0
                };
                w * f(a + i as f64 * h).exp()
            })
            .sum::<f64>()
            * h
            / 3.0
    }

    #[test]
    fn truncated_densities_integrate_to_one() {
        // One component: the prior alone, and one hugging an end.
        let prior = Parzen::fit(&[], -2.0, 3.0).expect("a range");
        assert_eq!(prior.mus, vec![0.5]);
        assert_eq!(prior.sigmas, vec![5.0]);
        let cases: Vec<Parzen> = vec![
            prior,
            Parzen::fit(&[0.0, 0.01, 0.02, 0.9, 1.0], 0.0, 1.0).expect("a range"),
            Parzen::fit(&[1e-3, 5e-3, 0.02], 1e-5f64.ln(), 1e-1f64.ln()).expect("a range"),
            Parzen::fit(
                &(0..40).map(|i| i as f64 * 0.1).collect::<Vec<_>>(),
                0.0,
                10.0,
            )
            .expect("a range"),
        ];
        for p in &cases {
            let total = integrate(|x| p.log_pdf(x), p.low, p.high);
            assert!((total - 1.0).abs() < 1e-4, "{p:?} integrates to {total}");
            let whole = p.log_mass(p.low, p.high).exp();
            assert!((whole - 1.0).abs() < 1e-6, "{p:?} has mass {whole}");
            // Masses of halves add up to the whole.
            let mid = 0.3 * p.low + 0.7 * p.high;
            let halves = p.log_mass(p.low, mid).exp() + p.log_mass(mid, p.high).exp();
            assert!((halves - 1.0).abs() < 1e-6, "halves add to {halves}");
        }
        // Unit intervals of an integer axis sum to one.
        let p = Parzen::fit(&[1.0, 2.0, 2.0, 7.0], -0.5, 9.5).expect("a range");
        let sum: f64 = (0..10)
            .map(|k| p.log_mass(k as f64 - 0.5, k as f64 + 0.5).exp())
            .sum();
        assert!((sum - 1.0).abs() < 1e-6, "integer masses sum to {sum}");
        // The bandwidth rule, by hand: centres 0.2, 0.5 (prior), 0.6 on
        // [0, 1]; sigmas 0.3 (first: inner neighbour), prior 1, 0.1 (last:
        // inner neighbour), all at least 1 / 4.
        let p = Parzen::fit(&[0.6, 0.2], 0.0, 1.0).expect("a range");
        assert_eq!(p.mus, vec![0.2, 0.5, 0.6]);
        let want = [0.3, 1.0, 0.25];
        for (s, w) in p.sigmas.iter().zip(want) {
            assert!(
                (s - w).abs() < 1e-12,
                "sigmas {:?}, want {want:?}",
                p.sigmas
            );
        }
    }

    #[test]
    fn split_ranks_complete_then_pruned_deeper_first_then_pending() {
        let o = |outcome| Observation {
            params: BTreeMap::new(),
            outcome,
        };
        let mut obs = vec![
            o(Outcome::Pending), // 0
            o(Outcome::Pruned {
                epochs: 3,
                loss: 0.01,
            }), // 1
            o(Outcome::Complete { loss: 0.5 }), // 2
            o(Outcome::Pruned {
                epochs: 9,
                loss: 0.4,
            }), // 3
            o(Outcome::Complete { loss: f64::NAN }), // 4
            o(Outcome::Complete { loss: 0.2 }), // 5
            o(Outcome::Pruned {
                epochs: 9,
                loss: 0.3,
            }), // 6
            o(Outcome::Pending), // 7
            o(Outcome::Complete { loss: 0.9 }), // 8
            o(Outcome::Pruned {
                epochs: 1,
                loss: f64::NAN,
            }), // 9
            o(Outcome::Pruned {
                epochs: 1,
                loss: 0.7,
            }), // 10
        ];
        // 9 ranked: one good.
        let (good, bad) = split(&obs);
        assert_eq!(good, vec![5]);
        assert_eq!(bad, vec![2, 8, 4, 6, 3, 1, 10, 9, 0, 7]);
        // Two more complete ones make 11 ranked: two good, and a pruned
        // trial with the lowest loss still ranks after every complete one.
        obs.push(o(Outcome::Complete { loss: 0.6 }));
        obs.push(o(Outcome::Complete { loss: 0.05 }));
        let (good, bad) = split(&obs);
        assert_eq!(good, vec![12, 5]);
        assert_eq!(bad, vec![2, 11, 8, 4, 6, 3, 1, 10, 9, 0, 7]);
        // Only pending: nothing is good, everything bad.
        let (good, bad) = split(&[o(Outcome::Pending), o(Outcome::Pending)]);
        assert!(good.is_empty());
        assert_eq!(bad, vec![0, 1]);
        // Pruned trials are good when nothing has finished.
        let (good, _) = split(&obs[9..11]);
        assert_eq!(good, vec![1], "epoch-1 loss 0.7 beats epoch-1 NaN");

        assert_eq!(n_good(0), 0);
        assert_eq!(n_good(1), 1);
        assert_eq!(n_good(10), 1);
        assert_eq!(n_good(11), 2);
        assert_eq!(n_good(250), 25);
        assert_eq!(n_good(300), 25);
    }

    /// The best loss of 30 trials on f(x, lr) = (x - 0.7)^2 + (log10 lr +
    /// 3)^2: by TPE, and by random draws with the same per-trial
    /// generators (so the first 10 trials of both are the same).
    fn tpe_and_random(seed: u64) -> (f64, f64) {
        let axes = vec![
            axis(
                "x",
                Distribution::Uniform {
                    low: 0.0,
                    high: 1.0,
                },
            ),
            axis(
                "lr",
                Distribution::LogUniform {
                    low: 1e-5,
                    high: 1e-1,
                },
            ),
        ];
        let f = |p: &BTreeMap<String, toml::Value>| {
            (num(p, "x") - 0.7).powi(2) + (num(p, "lr").log10() + 3.0).powi(2)
        };
        let mut history = Vec::new();
        for i in 0..30 {
            let p = propose(
                &axes,
                &history,
                &SETTINGS,
                &mut super::super::trial_rng(seed, i),
            );
            let loss = f(&p);
            history.push(Observation {
                params: p,
                outcome: Outcome::Complete { loss },
            });
        }
        let tpe = history
            .iter()
            .filter_map(|o| match o.outcome {
                Outcome::Complete { loss } => Some(loss),
                _ => None,
            })
            .fold(f64::INFINITY, f64::min);
        let random = (0..30)
            .map(|i| {
                let mut rng = super::super::trial_rng(seed, i);
                let p: BTreeMap<String, toml::Value> = axes
                    .iter()
                    .map(|a| {
                        let v = super::super::sample(&a.cases[0].distribution, &mut rng);
                        (a.key.clone(), v)
                    })
                    .collect();
                f(&p)
            })
            .fold(f64::INFINITY, f64::min);
        (tpe, random)
    }

    /// TPE against random search over 40 seeds. With the defaults
    /// (Optuna's), TPE's best of 30 beats the paired random search's in
    /// about 3 seeds of 4 (measured over 400 seeds: mean best 0.016 against
    /// 0.042), so 5 seeds would pass by luck about 3 times in 5; 40 make
    /// the comparison a measurement rather than a draw.
    #[test]
    fn tpe_beats_random_search() {
        let seeds: Vec<u64> = (1..=40).collect();
        let runs: Vec<(f64, f64)> = seeds.iter().map(|&s| tpe_and_random(s)).collect();
        for (s, (t, r)) in seeds.iter().zip(&runs) {
            println!("seed {s}: tpe best {t:.6}  random best {r:.6}");
        }
        let n = runs.len() as f64;
        let tpe_mean = runs.iter().map(|r| r.0).sum::<f64>() / n;
        let random_mean = runs.iter().map(|r| r.1).sum::<f64>() / n;
        let wins = runs.iter().filter(|r| r.0 < r.1).count();
        let ties = runs.iter().filter(|r| r.0 == r.1).count();
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            0.5 * (v[v.len() / 2 - 1] + v[v.len() / 2])
        };
        let tpe_median = median(runs.iter().map(|r| r.0).collect());
        let random_median = median(runs.iter().map(|r| r.1).collect());
        let first5 = runs[..5].iter().filter(|r| r.0 < r.1).count();
        println!(
            "mean best: tpe {tpe_mean:.6}  random {random_mean:.6}; median best: tpe \
             {tpe_median:.6}  random {random_median:.6}; tpe wins {wins} of {}, ties {ties}; \
             seeds 1-5: tpe wins {first5} of 5",
            runs.len()
        );
        assert!(
            tpe_mean < 0.7 * random_mean,
            "TPE's mean best {tpe_mean} is not well below random's {random_mean}"
        );
        assert!(wins >= 24, "TPE wins only {wins} of {}", runs.len());
        assert!(tpe_median < 0.02, "TPE's median best is only {tpe_median}");
    }

    #[test]
    fn a_choice_always_good_is_proposed() {
        let values: Vec<toml::Value> = ["a", "b", "c"]
            .iter()
            .map(|s| toml::Value::String(s.to_string()))
            .collect();
        let axes = vec![axis("c", Distribution::Choice(values.clone()))];
        // 30 trials: "b" always has the lowest losses.
        let history: Vec<Observation> = (0..30)
            .map(|i| {
                let v = values[i % 3].clone();
                let loss = if i % 3 == 1 {
                    0.01 * i as f64
                } else {
                    1.0 + i as f64
                };
                complete(&[("c", v)], loss)
            })
            .collect();
        let b = &values[1];
        let hits = (0..50)
            .filter(|&s| {
                let p = propose(
                    &axes,
                    &history,
                    &SETTINGS,
                    &mut ChaCha8Rng::seed_from_u64(s),
                );
                &p["c"] == b
            })
            .count();
        println!("b proposed {hits} of 50 times");
        assert!(hits >= 40, "b proposed only {hits} of 50 times");
    }

    #[test]
    fn an_int_axis_proposes_integers_in_range() {
        let axes = vec![axis("n", Distribution::Int { low: -3, high: 5 })];
        // Losses lowest around 4, so proposals lean there.
        let history: Vec<Observation> = (0..20)
            .map(|i| {
                let k = -3 + (i * 7 % 9) as i64;
                complete(
                    &[("n", toml::Value::Integer(k))],
                    ((k - 4) * (k - 4)) as f64,
                )
            })
            .collect();
        let mut counts = BTreeMap::new();
        for s in 0..100 {
            let p = propose(
                &axes,
                &history,
                &SETTINGS,
                &mut ChaCha8Rng::seed_from_u64(s),
            );
            let toml::Value::Integer(k) = p["n"] else {
                panic!("not an integer: {:?}", p["n"]);
            };
            assert!((-3..=5).contains(&k), "{k} out of range");
            *counts.entry(k).or_insert(0) += 1;
        }
        println!("int proposals: {counts:?}");
        let near = (3..=5)
            .map(|k| counts.get(&k).copied().unwrap_or(0))
            .sum::<usize>();
        assert!(near >= 60, "only {near} of 100 proposals in 3..=5");
    }

    fn s(v: &str) -> toml::Value {
        toml::Value::String(v.to_string())
    }

    #[test]
    fn a_conditional_space_never_has_inactive_keys() {
        let when = |t: &str| {
            vec![Condition {
                key: "optimizer.type".into(),
                values: vec![s(t)],
            }]
        };
        let axes = vec![
            axis(
                "optimizer.type",
                Distribution::Choice(vec![s("sgd"), s("adam")]),
            ),
            RandomAxis {
                key: "optimizer.momentum".into(),
                cases: vec![RandomCase {
                    when: when("sgd"),
                    distribution: Distribution::Uniform {
                        low: 0.0,
                        high: 0.99,
                    },
                }],
            },
            RandomAxis {
                key: "optimizer.learning_rate".into(),
                cases: vec![
                    RandomCase {
                        when: when("sgd"),
                        distribution: Distribution::LogUniform {
                            low: 1e-3,
                            high: 1e-1,
                        },
                    },
                    RandomCase {
                        when: when("adam"),
                        distribution: Distribution::LogUniform {
                            low: 1e-5,
                            high: 1e-3,
                        },
                    },
                ],
            },
        ];
        // TPE settles on one optimizer early (which one depends on the
        // seed), so several sweeps are run for both to be proposed by it.
        let mut kinds = BTreeMap::new();
        for seed in 1..=6 {
            let mut history: Vec<Observation> = Vec::new();
            for i in 0..200 {
                let p = propose(
                    &axes,
                    &history,
                    &SETTINGS,
                    &mut super::super::trial_rng(seed, i),
                );
                let sgd = p["optimizer.type"] == s("sgd");
                assert_eq!(
                    p.contains_key("optimizer.momentum"),
                    sgd,
                    "trial {i}: {p:?}"
                );
                let lr = num(&p, "optimizer.learning_rate");
                let (lo, hi) = if sgd { (1e-3, 1e-1) } else { (1e-5, 1e-3) };
                assert!((lo..=hi).contains(&lr), "trial {i}: {p:?}");
                if sgd {
                    let m = num(&p, "optimizer.momentum");
                    assert!((0.0..=0.99).contains(&m), "trial {i}: {p:?}");
                }
                assert_eq!(p.len(), if sgd { 3 } else { 2 });
                let ranked = history
                    .iter()
                    .filter(|o| !matches!(o.outcome, Outcome::Pending))
                    .count();
                if ranked >= SETTINGS.n_startup {
                    *kinds.entry(sgd).or_insert(0) += 1;
                }
                // Both optimizers can do well: sgd at lr 1e-2 with momentum
                // 0.9 (the best), adam at lr 1e-4. Some trials are pruned, some
                // left pending, most complete.
                let loss = if sgd {
                    (lr.log10() + 2.0).powi(2) + (num(&p, "optimizer.momentum") - 0.9).powi(2)
                } else {
                    (lr.log10() + 4.0).powi(2) + 0.1
                };
                let outcome = match i % 7 {
                    3 => Outcome::Pruned {
                        epochs: 1 + i % 3,
                        loss,
                    },
                    5 => Outcome::Pending,
                    _ => Outcome::Complete { loss },
                };
                history.push(Observation { params: p, outcome });
            }
        }
        // Both kinds were proposed by the estimator, not only drawn at
        // random.
        println!("TPE-phase proposals (sgd?): {kinds:?}");
        assert!(kinds.get(&true).copied().unwrap_or(0) >= 10, "{kinds:?}");
        assert!(kinds.get(&false).copied().unwrap_or(0) >= 10, "{kinds:?}");
    }

    #[test]
    fn only_observations_in_the_same_case_inform_an_axis() {
        let when = |t: &str| {
            vec![Condition {
                key: "type".into(),
                values: vec![s(t)],
            }]
        };
        let lr = RandomAxis {
            key: "lr".into(),
            cases: vec![
                RandomCase {
                    when: when("sgd"),
                    distribution: Distribution::LogUniform {
                        low: 1e-3,
                        high: 1e-1,
                    },
                },
                RandomCase {
                    when: when("adam"),
                    distribution: Distribution::LogUniform {
                        low: 1e-5,
                        high: 1e-3,
                    },
                },
            ],
        };
        let f = toml::Value::Float;
        let history = vec![
            complete(&[("type", s("sgd")), ("lr", f(0.01))], 0.0),
            complete(&[("type", s("adam")), ("lr", f(1e-4))], 1.0),
            complete(&[("lr", f(0.5))], 2.0),
            complete(&[("type", s("sgd"))], 3.0),
        ];
        let all = [0, 1, 2, 3];
        assert_eq!(values_of(&lr, 0, &history, &all), vec![&f(0.01)]);
        assert_eq!(values_of(&lr, 1, &history, &all), vec![&f(1e-4)]);
        assert!(values_of(&lr, 1, &history, &[0, 2, 3]).is_empty());
    }

    #[test]
    fn pending_trials_push_proposals_away() {
        let axes = vec![axis(
            "x",
            Distribution::Uniform {
                low: 0.0,
                high: 1.0,
            },
        )];
        let mut rng = ChaCha8Rng::seed_from_u64(17);
        let mut history: Vec<Observation> = (0..20)
            .map(|_| {
                let x = rng.random::<f64>();
                complete(&[("x", toml::Value::Float(x))], (x - 0.3).powi(2))
            })
            .collect();
        let (good, _) = split(&history);
        let best = num(&history[good[0]].params, "x");
        let mean_distance = |history: &[Observation]| {
            (0..40)
                .map(|s| {
                    let p = propose(&axes, history, &SETTINGS, &mut ChaCha8Rng::seed_from_u64(s));
                    (num(&p, "x") - best).abs()
                })
                .sum::<f64>()
                / 40.0
        };
        let without = mean_distance(&history);
        for _ in 0..5 {
            history.push(Observation {
                params: [("x".to_string(), toml::Value::Float(best))].into(),
                outcome: Outcome::Pending,
            });
        }
        let with = mean_distance(&history);
        println!("mean distance from the pending point: without {without:.4}, with {with:.4}");
        assert!(with > without, "pending trials did not push proposals away");
        // And the pending ones are all bad.
        let (good, bad) = split(&history);
        assert!(good.iter().all(|&i| i < 20));
        assert!((20..25).all(|i| bad.contains(&i)));
    }

    #[test]
    fn the_same_seed_gives_the_same_proposal() {
        let axes = vec![
            axis(
                "x",
                Distribution::Uniform {
                    low: 0.0,
                    high: 1.0,
                },
            ),
            axis("n", Distribution::Int { low: 1, high: 8 }),
            axis("c", Distribution::Choice(vec![s("a"), s("b")])),
        ];
        let history: Vec<Observation> = (0..15)
            .map(|i| {
                let x = i as f64 / 15.0;
                complete(
                    &[
                        ("x", toml::Value::Float(x)),
                        ("n", toml::Value::Integer(1 + i % 8)),
                        ("c", if i % 2 == 0 { s("a") } else { s("b") }),
                    ],
                    (x - 0.5).abs(),
                )
            })
            .collect();
        let go = |seed| {
            propose(
                &axes,
                &history,
                &SETTINGS,
                &mut ChaCha8Rng::seed_from_u64(seed),
            )
        };
        assert_eq!(go(3), go(3));
        assert_eq!(go(4), go(4));
        assert!(
            (0..10).any(|s| go(s) != go(s + 10)),
            "the seed changes nothing"
        );
    }
}
