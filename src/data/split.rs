//! Seeded, stratified train/validation splits and the seed mixing every
//! random choice in the data layer derives from.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Tags that keep the seed streams of different purposes apart.
pub(crate) const TAG_SPLIT: u64 = 0x5350_4c49_5400_0001;
pub(crate) const TAG_SHUFFLE: u64 = 0x5348_5546_464c_0002;
pub(crate) const TAG_AUGMENT: u64 = 0x4155_474d_4e54_0003;
pub(crate) const TAG_SYNTHETIC: u64 = 0x5359_4e54_4845_0004;

/// One well-mixed 64-bit seed from several parts (splitmix64 finalizer over
/// a running hash). Stable across platforms and versions: runs depend on it.
pub fn mix(parts: &[u64]) -> u64 {
    let mut h: u64 = 0x9e37_79b9_7f4a_7c15;
    for &p in parts {
        h = splitmix(h ^ splitmix(p.wrapping_add(0x9e37_79b9_7f4a_7c15)));
    }
    h
}

fn splitmix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A reproducible random stream for `parts`.
pub fn rng(parts: &[u64]) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(mix(parts))
}

/// Positions `0..n` in the order of epoch `epoch`.
pub fn epoch_order(n: usize, seed: u64, epoch: usize, shuffle: bool) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    if shuffle {
        order.shuffle(&mut rng(&[TAG_SHUFFLE, seed, epoch as u64]));
    }
    order
}

/// Split item positions into (training, validation), stratified by label:
/// each class gives `round(n * fraction)` of its items to validation (but
/// always keeps at least one for training), chosen by a generator seeded
/// from `seed` and the class. Both lists come back in ascending order, so
/// the split depends only on the labels, the fraction and the seed.
pub fn stratified(labels: &[usize], fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let classes = labels.iter().copied().max().map_or(0, |m| m + 1);
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); classes];
    for (pos, &label) in labels.iter().enumerate() {
        by_class[label].push(pos);
    }
    let mut train = Vec::with_capacity(labels.len());
    let mut validation = Vec::new();
    for (class, mut members) in by_class.into_iter().enumerate() {
        let n = members.len();
        if n == 0 {
            continue;
        }
        let take = ((n as f64 * fraction).round() as usize).min(n - 1);
        members.shuffle(&mut rng(&[TAG_SPLIT, seed, class as u64]));
        validation.extend_from_slice(&members[..take]);
        train.extend_from_slice(&members[take..]);
    }
    train.sort_unstable();
    validation.sort_unstable();
    (train, validation)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> Vec<usize> {
        // 3 classes of 40, 20 and 7 items, interleaved.
        let mut l: Vec<usize> = (0..60).map(|i| if i % 3 == 0 { 1 } else { 0 }).collect();
        l.extend([2; 7]);
        l.rotate_left(30);
        l
    }

    #[test]
    fn split_is_disjoint_complete_and_stratified() {
        let labels = labels();
        let (train, val) = stratified(&labels, 0.25, 42);
        let mut all: Vec<usize> = train.iter().chain(&val).copied().collect();
        all.sort_unstable();
        assert_eq!(
            all,
            (0..labels.len()).collect::<Vec<_>>(),
            "every item exactly once"
        );
        let count = |set: &[usize], c: usize| set.iter().filter(|&&p| labels[p] == c).count();
        let per_class: Vec<usize> = (0..3)
            .map(|c| labels.iter().filter(|&&l| l == c).count())
            .collect();
        assert_eq!(per_class, vec![40, 20, 7]);
        for (c, &n) in per_class.iter().enumerate() {
            let expected = (n as f64 * 0.25).round() as usize;
            assert_eq!(count(&val, c), expected, "class {c} of {n}");
            assert_eq!(count(&train, c), n - expected);
        }
    }

    #[test]
    fn split_is_the_same_every_time_and_depends_on_the_seed() {
        let labels = labels();
        let a = stratified(&labels, 0.3, 7);
        let b = stratified(&labels, 0.3, 7);
        assert_eq!(a, b);
        let c = stratified(&labels, 0.3, 8);
        assert_ne!(a.1, c.1, "another seed picks other validation items");
        assert_eq!(a.1.len(), c.1.len());
    }

    #[test]
    fn a_class_always_keeps_a_training_item() {
        let labels = vec![0, 1, 1, 1];
        let (train, val) = stratified(&labels, 0.9, 1);
        assert!(train.contains(&0));
        assert_eq!(val.len(), 2, "class 1 gives round(2.7)=3 capped at 2");
    }

    #[test]
    fn epoch_order_is_a_seeded_permutation() {
        let a = epoch_order(100, 1, 0, true);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_eq!(a, epoch_order(100, 1, 0, true));
        assert_ne!(a, epoch_order(100, 1, 1, true), "each epoch reshuffles");
        assert_eq!(epoch_order(5, 1, 3, false), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn mix_separates_its_inputs() {
        assert_ne!(mix(&[1, 2]), mix(&[2, 1]));
        assert_ne!(mix(&[0]), mix(&[0, 0]));
        assert_eq!(mix(&[5, 6, 7]), mix(&[5, 6, 7]));
    }
}
