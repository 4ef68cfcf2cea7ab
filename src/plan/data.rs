//! The data side of the plan: the data source with its paths made absolute
//! and its per-source options resolved, and the preprocessing and
//! augmentation with defaults filled in. The data module reads these, never
//! the specs.

use std::path::{Path, PathBuf};

use super::{absolute, Checker, MAX_PREFETCH, MAX_SYNTHETIC_IMAGES};
use crate::config::spec::{AugmentSpec, DataSpec};
use crate::vocab::{BadImagePolicy, ClassSelect, FillMode, Interpolation};

/// Where the images come from, checked, with options that apply to every
/// source resolved (sources that are never resized use `nearest`, sources
/// with nothing to skip use `fail`).
#[derive(Debug, Clone, PartialEq)]
pub struct DataPlan {
    pub source: SourcePlan,
    /// Resize filter.
    pub interpolation: Interpolation,
    /// What to do with a file that cannot be decoded.
    pub on_bad_image: BadImagePolicy,
    /// Keep decoded images in memory after the first epoch.
    pub cache: bool,
    /// Batches prepared ahead of the trainer (at least 1).
    pub prefetch: usize,
}

/// One data source; every path is absolute.
#[derive(Debug, Clone, PartialEq)]
pub enum SourcePlan {
    /// One sub-folder per class.
    ImageFolder {
        path: PathBuf,
        classes: Option<ClassSelect>,
        validation: Holdout,
        test_path: Option<PathBuf>,
    },
    /// `images/<class>/<id>.jpg` with `meta/{train,test}.json`.
    Food101 {
        path: PathBuf,
        classes: Option<ClassSelect>,
        validation: Holdout,
    },
    /// MNIST-format IDX files in `folder`.
    Idx {
        folder: PathBuf,
        train_images: PathBuf,
        train_labels: PathBuf,
        test_images: PathBuf,
        test_labels: PathBuf,
        class_names: Option<Vec<String>>,
        validation: Holdout,
    },
    /// Generated shapes.
    Synthetic {
        classes: usize,
        train_size: usize,
        validation_size: usize,
        test_size: usize,
        noise: f64,
    },
}

/// Where the validation data of a file-backed source comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Holdout {
    /// No validation data.
    None,
    /// This fraction of the training data, stratified and seeded.
    Split(f64),
    /// A separate folder with the same classes.
    Folder(PathBuf),
    /// The test set (Keras's `validation_data=(x_test, y_test)`).
    Test,
}

impl Holdout {
    fn of(split: Option<f64>, folder: Option<&PathBuf>, test: bool) -> Holdout {
        match (split, folder) {
            (Some(f), _) => Holdout::Split(f),
            (None, Some(p)) => Holdout::Folder(p.clone()),
            (None, None) if test => Holdout::Test,
            (None, None) => Holdout::None,
        }
    }
}

impl DataPlan {
    /// The plan of a checked spec whose paths are already absolute.
    pub(super) fn resolve(spec: &DataSpec) -> DataPlan {
        match spec {
            DataSpec::ImageFolder(d) => DataPlan {
                source: SourcePlan::ImageFolder {
                    path: d.path.clone(),
                    classes: d.classes.clone(),
                    validation: Holdout::of(d.validation_split, d.validation_path.as_ref(), false),
                    test_path: d.test_path.clone(),
                },
                interpolation: d.interpolation,
                on_bad_image: d.on_bad_image,
                cache: d.cache,
                prefetch: d.prefetch.max(1),
            },
            DataSpec::Food101(d) => DataPlan {
                source: SourcePlan::Food101 {
                    path: d.path.clone(),
                    classes: d.classes.clone(),
                    validation: Holdout::of(d.validation_split, None, false),
                },
                interpolation: d.interpolation,
                on_bad_image: d.on_bad_image,
                cache: d.cache,
                prefetch: d.prefetch.max(1),
            },
            DataSpec::Idx(d) => DataPlan {
                source: SourcePlan::Idx {
                    folder: d.path.clone(),
                    train_images: d.path.join(&d.train_images),
                    train_labels: d.path.join(&d.train_labels),
                    test_images: d.path.join(&d.test_images),
                    test_labels: d.path.join(&d.test_labels),
                    class_names: d.class_names.clone(),
                    validation: Holdout::of(d.validation_split, None, d.validate_on_test),
                },
                interpolation: Interpolation::Nearest,
                on_bad_image: BadImagePolicy::Fail,
                cache: false,
                prefetch: d.prefetch.max(1),
            },
            DataSpec::Synthetic(d) => DataPlan {
                source: SourcePlan::Synthetic {
                    classes: d.classes,
                    train_size: d.train_size,
                    validation_size: d.validation_size,
                    test_size: d.test_size,
                    noise: d.noise,
                },
                interpolation: Interpolation::Nearest,
                on_bad_image: BadImagePolicy::Fail,
                cache: false,
                prefetch: d.prefetch.max(1),
            },
        }
    }

    /// The `source` name as the file writes it.
    pub fn source_name(&self) -> &'static str {
        match self.source {
            SourcePlan::ImageFolder { .. } => "image_folder",
            SourcePlan::Food101 { .. } => "food101",
            SourcePlan::Idx { .. } => "idx",
            SourcePlan::Synthetic { .. } => "synthetic",
        }
    }

    /// Where the data lives, for reports.
    pub fn location(&self) -> String {
        match &self.source {
            SourcePlan::ImageFolder { path, .. } | SourcePlan::Food101 { path, .. } => {
                path.display().to_string()
            }
            SourcePlan::Idx { folder, .. } => folder.display().to_string(),
            SourcePlan::Synthetic { noise, .. } => format!("built-in shapes, noise {noise}"),
        }
    }

    /// Whether training gets validation data every epoch.
    pub fn has_validation(&self) -> bool {
        match &self.source {
            SourcePlan::ImageFolder { validation, .. }
            | SourcePlan::Food101 { validation, .. }
            | SourcePlan::Idx { validation, .. } => *validation != Holdout::None,
            SourcePlan::Synthetic {
                validation_size, ..
            } => *validation_size > 0,
        }
    }
}

/// Preprocessing for every split and random augmentation for training
/// batches, with defaults resolved (Keras `ImageDataGenerator` meanings).
#[derive(Debug, Clone, PartialEq)]
pub struct AugmentPlan {
    /// Multiplier on raw 0-255 pixel values (1.0 when unset).
    pub rescale: f64,
    /// Per-channel mean and std applied after `rescale`; none when unset.
    pub normalize: Option<Normalize>,
    /// Degrees; a rotation is drawn from [-r, r].
    pub rotation_range: f64,
    /// Fraction of the width; a shift is drawn from [-r, r].
    pub width_shift_range: f64,
    /// Fraction of the height; a shift is drawn from [-r, r].
    pub height_shift_range: f64,
    /// Brightness factors `[lo, hi]`.
    pub brightness_range: Option<[f64; 2]>,
    /// Zoom factors `[lo, hi]`, drawn per axis.
    pub zoom_range: Option<[f64; 2]>,
    /// Shear angle in degrees, drawn from [-r, r].
    pub shear_range: f64,
    pub horizontal_flip: bool,
    pub vertical_flip: bool,
    /// How pixels outside the image are filled.
    pub fill_mode: FillMode,
    /// The fill value of `fill_mode = "constant"`, in 0-255 units.
    pub cval: f64,
}

/// Per-channel standardisation, one value per channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalize {
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
}

impl Default for AugmentPlan {
    /// No preprocessing and no augmentation.
    fn default() -> Self {
        AugmentPlan::resolve(&AugmentSpec::default())
    }
}

impl AugmentPlan {
    fn resolve(a: &AugmentSpec) -> AugmentPlan {
        AugmentPlan {
            rescale: a.rescale.map(|r| r.0).unwrap_or(1.0),
            normalize: a.normalize.as_ref().map(|n| Normalize {
                mean: n.mean.clone(),
                std: n.std.clone(),
            }),
            rotation_range: a.rotation_range,
            width_shift_range: a.width_shift_range,
            height_shift_range: a.height_shift_range,
            brightness_range: a.brightness_range,
            zoom_range: a.zoom_range.map(|z| z.bounds()),
            shear_range: a.shear_range,
            horizontal_flip: a.horizontal_flip,
            vertical_flip: a.vertical_flip,
            fill_mode: a.fill_mode,
            cval: a.cval,
        }
    }

    /// Whether any random augmentation is configured.
    pub fn is_random(&self) -> bool {
        self.rotation_range > 0.0
            || self.width_shift_range > 0.0
            || self.height_shift_range > 0.0
            || self.brightness_range.is_some()
            || self.zoom_range.is_some_and(|z| z != [1.0, 1.0])
            || self.shear_range > 0.0
            || self.horizontal_flip
            || self.vertical_flip
    }
}

fn check_fraction_split(ck: &mut Checker, split: Option<f64>) {
    if let Some(v) = split {
        if !(v > 0.0 && v < 1.0) {
            ck.fail(
                "data.validation_split",
                format!("{v} is out of range: it must be between 0 and 1 (exclusive)"),
                None,
            );
        }
    }
}

fn check_classes(ck: &mut Checker, classes: &Option<ClassSelect>) {
    match classes {
        Some(ClassSelect::First(n)) if *n < 2 => ck.fail(
            "data.classes",
            format!("{n} classes cannot train a classifier; use at least 2"),
            None,
        ),
        Some(ClassSelect::Names(names)) => {
            if names.len() < 2 {
                ck.fail("data.classes", "list at least 2 classes", None);
            }
            let mut seen = std::collections::BTreeSet::new();
            for n in names {
                if !seen.insert(n) {
                    ck.fail("data.classes", format!("class `{n}` is listed twice"), None);
                }
            }
        }
        _ => {}
    }
}

pub(super) fn check_data(ck: &mut Checker, data: &DataSpec, base: &Path) -> DataSpec {
    let mut data = data.clone();
    // An empty path would quietly mean the working directory.
    let path = match &data {
        DataSpec::ImageFolder(d) => Some(&d.path),
        DataSpec::Food101(d) => Some(&d.path),
        DataSpec::Idx(d) => Some(&d.path),
        DataSpec::Synthetic(_) => None,
    };
    if path.is_some_and(|p| p.as_os_str().is_empty()) {
        ck.fail(
            "data.path",
            "is empty",
            Some("give the dataset folder, relative to where runner runs or absolute".into()),
        );
    }
    match &mut data {
        DataSpec::ImageFolder(d) => {
            d.path = absolute(base, &d.path);
            if let Some(p) = d.validation_path.as_mut() {
                *p = absolute(base, p);
            }
            if let Some(p) = d.test_path.as_mut() {
                *p = absolute(base, p);
            }
            check_fraction_split(ck, d.validation_split);
            if d.validation_split.is_some() && d.validation_path.is_some() {
                ck.fail(
                    "data.validation_path",
                    "set either `validation_split` or `validation_path`, not both",
                    None,
                );
            }
            check_classes(ck, &d.classes);
            check_prefetch(ck, d.prefetch);
        }
        DataSpec::Food101(d) => {
            d.path = absolute(base, &d.path);
            check_fraction_split(ck, d.validation_split);
            check_classes(ck, &d.classes);
            check_prefetch(ck, d.prefetch);
        }
        DataSpec::Idx(d) => {
            d.path = absolute(base, &d.path);
            check_fraction_split(ck, d.validation_split);
            if d.validation_split.is_some() && d.validate_on_test {
                ck.fail(
                    "data.validate_on_test",
                    "set either `validation_split` or `validate_on_test`, not both",
                    None,
                );
            }
            if let Some(names) = &d.class_names {
                if names.len() < 2 {
                    ck.fail("data.class_names", "list at least 2 class names", None);
                }
            }
            check_prefetch(ck, d.prefetch);
        }
        DataSpec::Synthetic(d) => {
            if !(2..=SYNTHETIC_MAX_CLASSES).contains(&d.classes) {
                ck.fail(
                    "data.classes",
                    format!(
                        "{} is out of range: the synthetic set has 2 to {SYNTHETIC_MAX_CLASSES} classes",
                        d.classes
                    ),
                    None,
                );
            }
            if d.train_size == 0 {
                ck.fail("data.train_size", "must be at least 1", None);
            }
            if d.test_size == 0 {
                ck.fail("data.test_size", "must be at least 1", None);
            }
            for (key, n) in [
                ("data.train_size", d.train_size),
                ("data.validation_size", d.validation_size),
                ("data.test_size", d.test_size),
            ] {
                ck.at_most(
                    key,
                    n,
                    MAX_SYNTHETIC_IMAGES,
                    "the synthetic images are generated into memory",
                );
            }
            ck.range("data.noise", d.noise, 0.0, 1.0, false);
            check_prefetch(ck, d.prefetch);
        }
    }
    data
}

/// Number of distinct shape classes the synthetic generator can draw.
pub const SYNTHETIC_MAX_CLASSES: usize = 12;

fn check_prefetch(ck: &mut Checker, prefetch: usize) {
    if prefetch == 0 {
        ck.fail("data.prefetch", "must be at least 1 batch", None);
    }
    ck.at_most(
        "data.prefetch",
        prefetch,
        MAX_PREFETCH,
        "every prefetched batch is held in memory",
    );
}

pub(super) fn check_augment(ck: &mut Checker, a: &AugmentSpec) -> AugmentPlan {
    if let Some(r) = a.rescale {
        if !(r.0.is_finite() && r.0 > 0.0) {
            ck.fail(
                "augment.rescale",
                format!("{} is out of range: it must be greater than 0", r.0),
                None,
            );
        }
    }
    ck.range(
        "augment.rotation_range",
        a.rotation_range,
        0.0,
        360.0,
        false,
    );
    ck.range(
        "augment.width_shift_range",
        a.width_shift_range,
        0.0,
        1.0,
        true,
    );
    ck.range(
        "augment.height_shift_range",
        a.height_shift_range,
        0.0,
        1.0,
        true,
    );
    ck.range("augment.shear_range", a.shear_range, 0.0, 90.0, true);
    if let Some([lo, hi]) = a.brightness_range {
        if !(lo >= 0.0 && lo <= hi && hi.is_finite()) {
            ck.fail(
                "augment.brightness_range",
                format!("[{lo}, {hi}] is not a range of factors: it needs 0 <= lo <= hi"),
                None,
            );
        }
    }
    if let Some(z) = a.zoom_range {
        let [lo, hi] = z.bounds();
        if !(lo > 0.0 && lo <= hi && hi.is_finite()) {
            ck.fail(
                "augment.zoom_range",
                format!("zoom factors [{lo}, {hi}] are not valid: they need 0 < lo <= hi"),
                Some("a single number z means [1 - z, 1 + z], so z must be below 1".into()),
            );
        }
    }
    ck.range("augment.cval", a.cval, 0.0, 255.0, false);
    if let Some(n) = &a.normalize {
        if n.std.iter().any(|s| s.is_nan() || *s <= 0.0) {
            ck.fail(
                "augment.normalize.std",
                "every std must be greater than 0",
                None,
            );
        }
    }
    AugmentPlan::resolve(a)
}
