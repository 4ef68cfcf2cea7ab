//! What was found: classes and counts per split (printed before training and
//! by `runner data`), the fingerprint stored with a run, and the optional
//! full inspection (image sizes, unreadable files) of `runner data`.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;
use serde::Serialize;

use super::{decode, Split};
use crate::model::summary::thousands;
use crate::plan::DataPlan;

/// Where the validation split came from.
#[derive(Debug, Clone, PartialEq)]
pub enum ValidationFrom {
    None,
    /// A stratified, seeded fraction of the training images.
    Split {
        fraction: f64,
        seed: u64,
    },
    Folder(PathBuf),
    /// The test set, evaluated every epoch (`validate_on_test`).
    Test,
    /// Generated (synthetic source).
    Generated,
}

/// One class's counts per split (`None`: the split does not exist).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassCounts {
    pub name: String,
    pub train: usize,
    pub validation: Option<usize>,
    pub test: Option<usize>,
}

/// The dataset's identity: stored in a run's meta.json, so two runs can be
/// told apart when their data differ.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DataFingerprint {
    pub source: String,
    pub classes: Vec<String>,
    pub train: usize,
    pub validation: Option<usize>,
    pub test: Option<usize>,
    /// Per class, in label order: [train, validation, test].
    pub per_class: Vec<[Option<usize>; 3]>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DataReport {
    pub source: &'static str,
    /// The folder read, or a description for the synthetic source.
    pub location: String,
    pub classes: Vec<ClassCounts>,
    pub train: usize,
    pub validation: Option<usize>,
    pub test: Option<usize>,
    pub validation_from: ValidationFrom,
    pub notes: Vec<String>,
}

fn counts(split: Option<&Split>, classes: usize) -> Option<Vec<usize>> {
    split.map(|s| {
        let mut c = vec![0; classes];
        for &l in s.labels() {
            c[l] += 1;
        }
        c
    })
}

impl DataReport {
    pub(super) fn new(
        data: &DataPlan,
        classes: &[String],
        train: &Split,
        validation: Option<&Split>,
        test: Option<&Split>,
        validation_from: ValidationFrom,
        notes: Vec<String>,
    ) -> DataReport {
        let n = classes.len();
        let (tr, va, te) = (
            counts(Some(train), n).unwrap_or_default(),
            counts(validation, n),
            counts(test, n),
        );
        DataReport {
            source: data.source_name(),
            location: data.location(),
            classes: classes
                .iter()
                .enumerate()
                .map(|(i, name)| ClassCounts {
                    name: name.clone(),
                    train: tr[i],
                    validation: va.as_ref().map(|v| v[i]),
                    test: te.as_ref().map(|t| t[i]),
                })
                .collect(),
            train: train.len(),
            validation: validation.map(Split::len),
            test: test.map(Split::len),
            validation_from,
            notes,
        }
    }

    pub fn fingerprint(&self) -> DataFingerprint {
        DataFingerprint {
            source: self.source.to_string(),
            classes: self.classes.iter().map(|c| c.name.clone()).collect(),
            train: self.train,
            validation: self.validation,
            test: self.test,
            per_class: self
                .classes
                .iter()
                .map(|c| [Some(c.train), c.validation, c.test])
                .collect(),
        }
    }

    /// Total images in all splits.
    pub fn total(&self) -> usize {
        self.train + self.validation.unwrap_or(0) + self.test.unwrap_or(0)
    }
}

fn opt(n: Option<usize>) -> String {
    n.map(thousands).unwrap_or_else(|| "-".into())
}

fn percent(fraction: f64) -> String {
    let p = fraction * 100.0;
    if (p - p.round()).abs() < 1e-9 {
        format!("{}%", p.round())
    } else {
        format!("{p:.1}%")
    }
}

impl fmt::Display for DataReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "source      {} ({})", self.source, self.location)?;
        writeln!(f, "classes     {}", self.classes.len())?;
        let width = [Some(self.train), self.validation, self.test]
            .iter()
            .map(|n| opt(*n).len())
            .max()
            .unwrap_or(1);
        let train_note = match (&self.validation_from, self.validation) {
            (ValidationFrom::Split { .. }, Some(v)) => format!(
                "   ({} training images found, {} of them held out for validation)",
                thousands(self.train + v),
                thousands(v)
            ),
            _ => String::new(),
        };
        writeln!(
            f,
            "train       {:>width$}{train_note}",
            thousands(self.train)
        )?;
        let val_note = match &self.validation_from {
            ValidationFrom::None => "   (no validation data)".to_string(),
            ValidationFrom::Split { fraction, seed } => {
                format!(
                    "   (a {} split of the training images, stratified by class, seed {seed})",
                    percent(*fraction)
                )
            }
            ValidationFrom::Folder(p) => format!("   (from {})", p.display()),
            ValidationFrom::Test => "   (the test set, evaluated every epoch)".to_string(),
            ValidationFrom::Generated => String::new(),
        };
        writeln!(f, "validation  {:>width$}{val_note}", opt(self.validation))?;
        writeln!(f, "test        {:>width$}", opt(self.test))?;
        for note in &self.notes {
            writeln!(f, "note        {note}")?;
        }
        writeln!(f)?;

        let name_w = self
            .classes
            .iter()
            .map(|c| c.name.chars().count())
            .max()
            .unwrap_or(5)
            .max(5);
        let col = |n: Option<usize>| opt(n);
        let total = ClassCounts {
            name: "total".into(),
            train: self.train,
            validation: self.validation,
            test: self.test,
        };
        let rows: Vec<[String; 4]> = self
            .classes
            .iter()
            .chain(std::iter::once(&total))
            .map(|c| {
                [
                    c.name.clone(),
                    thousands(c.train),
                    col(c.validation),
                    col(c.test),
                ]
            })
            .collect();
        let w: [usize; 3] = std::array::from_fn(|k| {
            let header = ["train", "validation", "test"][k].len();
            rows.iter()
                .map(|r| r[k + 1].len())
                .max()
                .unwrap_or(0)
                .max(header)
        });
        writeln!(
            f,
            "{:<name_w$}  {:>w0$}  {:>w1$}  {:>w2$}",
            "class",
            "train",
            "validation",
            "test",
            w0 = w[0],
            w1 = w[1],
            w2 = w[2]
        )?;
        for (i, r) in rows.iter().enumerate() {
            if i == rows.len() - 1 {
                writeln!(f, "{}", "-".repeat(name_w + 6 + w[0] + w[1] + w[2]))?;
            }
            writeln!(
                f,
                "{:<name_w$}  {:>w0$}  {:>w1$}  {:>w2$}",
                r[0],
                r[1],
                r[2],
                r[3],
                w0 = w[0],
                w1 = w[1],
                w2 = w[2]
            )?;
        }
        Ok(())
    }
}

/// A file's stored (width, height), or why it cannot be decoded.
type DecodeResult = Result<(u32, u32), String>;

/// The result of decoding every image once (`runner data`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inspection {
    /// (width, height) as stored -> how many images have it.
    pub sizes: BTreeMap<(u32, u32), usize>,
    /// Files that could not be decoded, with the reason.
    pub bad: Vec<(PathBuf, String)>,
    /// Image files decoded (in-memory sources are checked when read).
    pub decoded: usize,
}

impl Inspection {
    /// Decode every item of `splits` (files at reduced scale, in parallel);
    /// `progress(done, total)` is called as items finish.
    pub fn run(splits: &[&Split], progress: &(dyn Fn(usize, usize) + Sync)) -> Inspection {
        let total: usize = splits.iter().map(|s| s.len()).sum();
        let done = AtomicUsize::new(0);
        let mut out = Inspection::default();
        for split in splits {
            if let Some(size) = split.native_size() {
                *out.sizes.entry(size).or_insert(0) += split.len();
                progress(
                    done.fetch_add(split.len(), Ordering::Relaxed) + split.len(),
                    total,
                );
                continue;
            }
            let target = split.inner.pipeline.target;
            let results: Vec<(PathBuf, DecodeResult)> = (0..split.len())
                .into_par_iter()
                .filter_map(|i| {
                    let path = split.path(i)?.to_path_buf();
                    let r = decode::load(&path, &target).map(|d| d.original);
                    progress(done.fetch_add(1, Ordering::Relaxed) + 1, total);
                    Some((path, r))
                })
                .collect();
            for (path, r) in results {
                out.decoded += 1;
                match r {
                    Ok(size) => *out.sizes.entry(size).or_insert(0) += 1,
                    Err(reason) => out.bad.push((path, reason)),
                }
            }
        }
        out
    }
}

impl fmt::Display for Inspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sizes: Vec<(&(u32, u32), &usize)> = self.sizes.iter().collect();
        sizes.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let mut line = String::new();
        for ((w, h), n) in sizes.iter().take(6) {
            if !line.is_empty() {
                line.push_str(", ");
            }
            let _ = write!(line, "{w}x{h} ({})", thousands(**n));
        }
        if sizes.len() > 6 {
            let rest: usize = sizes[6..].iter().map(|(_, n)| **n).sum();
            let _ = write!(
                line,
                ", {} other sizes ({})",
                sizes.len() - 6,
                thousands(rest)
            );
        }
        if self.decoded > 0 {
            writeln!(f, "decoded     {} image files", thousands(self.decoded))?;
        }
        writeln!(f, "sizes       {line}   (width x height as stored)")?;
        if self.bad.is_empty() {
            writeln!(f, "bad images  none")?;
        } else {
            writeln!(f, "bad images  {}", thousands(self.bad.len()))?;
            for (path, reason) in &self.bad {
                writeln!(f, "  {}: {reason}", path.display())?;
            }
        }
        Ok(())
    }
}
