//! Array task ids: `--array` ranges, and chunks that keep them below `MaxArraySize`.

use std::fmt::Write as _;

/// The value of `sbatch --array`: the task ids as ranges, with at most
/// `max_parallel` of them running at once (`0-8%4`).
pub fn array_spec(task_ids: &[usize], max_parallel: Option<usize>) -> String {
    let throttle = max_parallel
        .filter(|&n| n > 0)
        .map(|n| format!("%{n}"))
        .unwrap_or_default();
    format!("{}{throttle}", compact_ranges(task_ids))
}

/// `0-3,7,9-10` for `[0,1,2,3,7,9,10]` (sorted and deduplicated first).
pub fn compact_ranges(indices: &[usize]) -> String {
    let mut sorted = indices.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = String::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if end == start {
            let _ = write!(out, "{start}");
        } else {
            let _ = write!(out, "{start}-{end}");
        }
        i += 1;
    }
    out
}

/// The task ids of an array spec as Slurm prints it: `4`, `5-9%2`,
/// `[1,3-4]`, `0-15:4`. `None` when it is not one.
pub fn parse_array_spec(spec: &str) -> Option<Vec<usize>> {
    let spec = spec.trim().trim_start_matches('[').trim_end_matches(']');
    let spec = spec.split('%').next()?;
    let mut out = Vec::new();
    for part in spec.split(',') {
        let (range, step) = match part.split_once(':') {
            Some((r, s)) => (r, s.parse::<usize>().ok().filter(|&s| s > 0)?),
            None => (part, 1),
        };
        match range.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (a.parse::<usize>().ok()?, b.parse::<usize>().ok()?);
                if b < a {
                    return None;
                }
                out.extend((a..=b).step_by(step));
            }
            None => out.push(range.parse().ok()?),
        }
    }
    Some(out)
}

/// One `sbatch` of a split array: array task `t` runs trial `offset + t`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub offset: usize,
    pub trials: Vec<usize>,
}

impl Chunk {
    pub fn task_ids(&self) -> Vec<usize> {
        self.trials.iter().map(|t| t - self.offset).collect()
    }
}

/// Split `trials` into submissions whose task ids stay below
/// `max_array_size`. Trials that all fit keep offset 0 (task id = trial index);
/// later chunks start at their first trial.
pub fn plan_chunks(trials: &[usize], max_array_size: usize) -> Vec<Chunk> {
    let mut sorted = trials.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let max = max_array_size.max(1);
    let mut chunks: Vec<Chunk> = Vec::new();
    for t in sorted {
        if let Some(last) = chunks.last_mut() {
            if t - last.offset < max {
                last.trials.push(t);
                continue;
            }
        }
        let offset = if chunks.is_empty() && t < max { 0 } else { t };
        chunks.push(Chunk {
            offset,
            trials: vec![t],
        });
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_ranges_and_back() {
        assert_eq!(compact_ranges(&[9, 0, 1, 2, 3, 7, 10, 3]), "0-3,7,9-10");
        assert_eq!(compact_ranges(&[5]), "5");
        assert_eq!(compact_ranges(&[]), "");
        assert_eq!(array_spec(&[0, 1, 2, 5], Some(2)), "0-2,5%2");
        assert_eq!(array_spec(&[0, 1], None), "0-1");
        assert_eq!(array_spec(&[0, 1], Some(0)), "0-1");
        assert_eq!(
            parse_array_spec("0-3,7,9-10"),
            Some(vec![0, 1, 2, 3, 7, 9, 10])
        );
        assert_eq!(parse_array_spec("[5-9%2]"), Some(vec![5, 6, 7, 8, 9]));
        assert_eq!(parse_array_spec("[1,3-4]"), Some(vec![1, 3, 4]));
        assert_eq!(parse_array_spec("0-8:4"), Some(vec![0, 4, 8]));
        assert_eq!(parse_array_spec("4294967294"), Some(vec![4294967294]));
        assert_eq!(parse_array_spec("N/A"), None);
        assert_eq!(parse_array_spec("9-3"), None);
    }

    #[test]
    fn chunks_keep_task_ids_below_max_array_size() {
        // Everything fits: one submission, task id = trial index.
        assert_eq!(
            plan_chunks(&[7, 3], 1001),
            vec![Chunk {
                offset: 0,
                trials: vec![3, 7]
            }]
        );
        // 2500 trials, MaxArraySize 1001: task ids 0..=1000 at most.
        let all: Vec<usize> = (0..2500).collect();
        let chunks = plan_chunks(&all, 1001);
        assert_eq!(
            chunks.iter().map(|c| c.offset).collect::<Vec<_>>(),
            vec![0, 1001, 2002]
        );
        assert_eq!(chunks.iter().map(|c| c.trials.len()).sum::<usize>(), 2500);
        for c in &chunks {
            assert!(c.task_ids().iter().all(|&t| t < 1001), "{c:?}");
        }
        // A resubmission of high trials gets an offset instead of a useless split.
        let chunks = plan_chunks(&[1500, 1600], 1001);
        assert_eq!(chunks.len(), 1);
        assert_eq!(
            (chunks[0].offset, chunks[0].task_ids()),
            (1500, vec![0, 100])
        );
        // MaxArraySize 1: every trial alone as task 0 (after the first).
        let chunks = plan_chunks(&[0, 1, 2], 1);
        assert_eq!(
            chunks.iter().map(|c| c.task_ids()).collect::<Vec<_>>(),
            vec![vec![0]; 3]
        );
    }
}
