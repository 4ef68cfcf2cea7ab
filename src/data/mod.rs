//! Plan -> datasets: scan and validate the source, split it, and hand out
//! epochs of preprocessed (and, for training, augmented) batches.
//!
//! [`Dataset::open`] only lists files and reads small in-memory sources
//! (IDX); images are decoded batch by batch by [`Split::batches`], in
//! parallel on rayon, on a background thread that keeps `prefetch` batches
//! ready. Every random choice (validation split, epoch order, augmentation,
//! synthetic samples) comes from a generator seeded by the experiment seed
//! and the item it is for, so batches do not depend on the thread count.

pub mod augment;
pub mod decode;
pub mod fixtures;
pub mod food101;
pub mod idx;
pub mod image_folder;
pub mod loader;
pub mod missing;
pub mod preview;
pub mod report;
pub mod split;
pub mod synthetic;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use image::DynamicImage;
use miette::Diagnostic;
use thiserror::Error;

use crate::config::key_path::KeyPath;
use crate::config::{ConfigError, Sources};
use crate::plan::{AugmentPlan, ExperimentPlan, Holdout, SourcePlan};
use crate::vocab::BadImagePolicy;
use augment::{Frame, Params, Standardize};
use decode::{Pixels, Target};
use idx::IdxImages;
use synthetic::{Generator, SplitId};

pub use loader::{Batch, BatchOptions, Batches};
pub use report::{DataFingerprint, DataReport, Inspection};

/// Everything that can be wrong with the data, each naming the path at fault.
#[derive(Debug, Error, Diagnostic)]
pub enum DataError {
    /// Made by [`missing::folder`], which finds the help.
    #[error("{what} {} does not exist or is not a folder", path.display())]
    #[diagnostic(code(runner::data::missing))]
    MissingFolder {
        path: PathBuf,
        what: &'static str,
        /// The config key that names the folder (`data.path`).
        key: &'static str,
        #[help]
        help: String,
    },

    #[error("{what} {} does not exist", path.display())]
    #[diagnostic(code(runner::data::missing))]
    MissingFile {
        path: PathBuf,
        what: &'static str,
        /// The config key that names the file or its folder.
        key: &'static str,
        #[help]
        help: Option<String>,
    },

    #[error("{} has no class sub-folders", path.display())]
    #[diagnostic(
        code(runner::data::no_classes),
        help("put each class's images in its own sub-folder: <path>/<class>/<image>.jpg")
    )]
    NoClasses { path: PathBuf },

    #[error("{} holds the split folders {}, not class folders", path.display(), splits.join(", "))]
    #[diagnostic(code(runner::data::split_folders))]
    SplitFolders {
        path: PathBuf,
        splits: Vec<String>,
        #[help]
        help: String,
    },

    #[error("class folder {} does not exist (class `{class}`)", path.display())]
    #[diagnostic(
        code(runner::data::missing_class),
        help("validation and test folders need a sub-folder for every training class")
    )]
    MissingClassFolder { path: PathBuf, class: String },

    #[error("class folder {} has no images ({})", path.display(), image_folder::extensions_listed())]
    #[diagnostic(
        code(runner::data::empty_class),
        help("every sub-folder is a class: move the folder out, or list the classes to use in `data.classes`")
    )]
    EmptyClass { path: PathBuf },

    #[error("class `{name}` does not exist in {}", path.display())]
    #[diagnostic(code(runner::data::unknown_class))]
    UnknownClass {
        name: String,
        path: PathBuf,
        #[help]
        help: Option<String>,
    },

    #[error("`classes = {requested}` asks for more classes than the {found} in {}", path.display())]
    #[diagnostic(code(runner::data::too_few_classes))]
    TooFewClasses {
        path: PathBuf,
        requested: usize,
        found: usize,
    },

    /// Made by [`DataError::class_count`], which finds the help.
    #[error("the data has {data} classes but the model ends in {model} outputs")]
    #[diagnostic(code(runner::data::class_count))]
    ClassCount {
        data: usize,
        model: usize,
        /// Where the model's output count is written: the last dense
        /// layer's `units` (`model.layers[7].units`).
        units_key: KeyPath,
        #[help]
        help: String,
    },

    #[error("{}: not a valid IDX file: {reason}", path.display())]
    #[diagnostic(code(runner::data::idx))]
    BadIdx { path: PathBuf, reason: String },

    #[error("{} has {images} images but {} has {labels} labels", images_path.display(), labels_path.display())]
    #[diagnostic(code(runner::data::idx))]
    IdxCountMismatch {
        images_path: PathBuf,
        images: usize,
        labels_path: PathBuf,
        labels: usize,
    },

    #[error("{}: label {label} of item {index} is out of range for {classes} class names", path.display())]
    #[diagnostic(
        code(runner::data::label),
        help("list one name per label in `data.class_names`")
    )]
    BadLabel {
        path: PathBuf,
        label: usize,
        index: usize,
        classes: usize,
    },

    #[error("{}: {reason}", path.display())]
    #[diagnostic(code(runner::data::meta))]
    BadMeta { path: PathBuf, reason: String },

    #[error("{} lists `{entry}`, but {} does not exist{}", meta.display(), path.display(), if *more > 0 { format!(" ({more} more listed files are missing too)") } else { String::new() })]
    #[diagnostic(code(runner::data::missing_listed))]
    MissingListed {
        meta: PathBuf,
        entry: String,
        path: PathBuf,
        more: usize,
    },

    #[error("cannot read {}: {source}", path.display())]
    #[diagnostic(code(runner::data::io))]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("cannot list {}: {reason}", path.display())]
    #[diagnostic(code(runner::data::io))]
    Walk { path: PathBuf, reason: String },

    #[error("cannot decode image {}: {reason}", path.display())]
    #[diagnostic(code(runner::data::bad_image), help("remove or replace the file, or set `data.on_bad_image = \"skip\"` to leave such files out"))]
    BadImage { path: PathBuf, reason: String },

    #[error("{count} image(s) cannot be decoded; the first is {}: {reason}", first.display())]
    #[diagnostic(
        code(runner::data::bad_image),
        help(
            "remove or replace the files, or set `data.on_bad_image = \"skip\"` to leave them out"
        )
    )]
    BadImages {
        count: usize,
        first: PathBuf,
        reason: String,
    },

    #[error("cannot write {}: {reason}", path.display())]
    #[diagnostic(code(runner::data::write))]
    Write { path: PathBuf, reason: String },

    #[error(
        "the data loader crashed while preparing a batch of the {split} split (a bug in runner)"
    )]
    #[diagnostic(code(runner::data::loader))]
    LoaderCrashed { split: &'static str },
}

impl DataError {
    pub fn io(path: &Path, source: std::io::Error) -> DataError {
        DataError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// The model's `model` outputs do not match the data's `data` classes.
    /// The error is located at the last dense layer's `units`
    /// ([`ModelPlan::classes_key`]); `data.classes` can take fewer.
    pub fn class_count(data: usize, model: usize, units_key: KeyPath) -> DataError {
        let mut help = format!("set `units = {data}` in the last dense layer");
        if data > model {
            help += &format!(
                ", or `data.classes = {model}` to train on the first {model} of the {data} classes \
                 (or a list of {model} class names)"
            );
        }
        DataError::ClassCount {
            data,
            model,
            units_key,
            help,
        }
    }

    /// The config key whose value is at fault, where one is: the command
    /// locates the error at the line that set it.
    pub fn key(&self) -> Option<KeyPath> {
        match self {
            DataError::MissingFolder { key, .. } | DataError::MissingFile { key, .. } => {
                Some(KeyPath::parse(key))
            }
            DataError::SplitFolders { .. } => Some(KeyPath::parse("data.path")),
            DataError::UnknownClass { .. } | DataError::TooFewClasses { .. } => {
                Some(KeyPath::parse("data.classes"))
            }
            DataError::ClassCount { units_key, .. } => Some(units_key.clone()),
            _ => None,
        }
    }

    /// This error located at the config key whose value is at fault
    /// ([`DataError::key`]): the file and line, `--set` flag or variable
    /// that set it. Itself when it has no key.
    pub fn located(self, sources: &Sources) -> Result<LocatedData, DataError> {
        match self.key() {
            Some(key) => Ok(LocatedData {
                code: self.code().map(|c| c.to_string()),
                located: sources.error_at(
                    key,
                    self.to_string(),
                    self.help().map(|h| h.to_string()),
                ),
            }),
            None => Err(self),
        }
    }
}

/// A data error shown where its config key was set (the file and line with
/// the value underlined, or the `--set` flag), as a config error is shown,
/// under the data error's own code (`runner::data::missing`).
#[derive(Debug, Error)]
#[error("{located}")]
pub struct LocatedData {
    located: ConfigError,
    code: Option<String>,
}

impl Diagnostic for LocatedData {
    fn code<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        match &self.code {
            Some(code) => Some(Box::new(code)),
            None => self.located.code(),
        }
    }
    fn help<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        self.located.help()
    }
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.located.source_code()
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        self.located.labels()
    }
}

/// Which part of the data a split is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SplitKind {
    Train,
    Validation,
    Test,
}

impl SplitKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            SplitKind::Train => "train",
            SplitKind::Validation => "validation",
            SplitKind::Test => "test",
        }
    }
}

/// A source with its splits. Cheap to clone: splits share their contents.
#[derive(Clone)]
pub struct Dataset {
    pub classes: Vec<String>,
    pub train: Split,
    pub validation: Option<Split>,
    pub test: Option<Split>,
    report: Arc<DataReport>,
}

impl std::fmt::Debug for Dataset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataset")
            .field("classes", &self.classes)
            .field("train", &self.train.len())
            .field("validation", &self.validation.as_ref().map(Split::len))
            .field("test", &self.test.as_ref().map(Split::len))
            .finish()
    }
}

/// Where a split's items come from.
enum Items {
    Files(Vec<PathBuf>),
    Idx {
        images: Arc<IdxImages>,
        rows: Vec<usize>,
    },
    Synthetic {
        generator: Arc<Generator>,
        split: SplitId,
    },
}

/// A synthetic split whose 8-bit pixels fit in this many bytes is drawn
/// once and kept in memory (the Fashion-MNIST-sized benchmark set is 5 MB).
const SYNTHETIC_KEPT_BYTES: usize = 256 << 20;

/// How every item becomes model input.
#[derive(Debug, Clone)]
struct Pipeline {
    target: Target,
    augment: AugmentPlan,
    standardize: Standardize,
    on_bad_image: BadImagePolicy,
    prefetch: usize,
}

impl Pipeline {
    /// The plan's way from a stored item to model input.
    fn new(plan: &ExperimentPlan) -> Pipeline {
        let [height, width, channels] = plan.model.input;
        Pipeline {
            target: Target {
                height,
                width,
                channels,
                interpolation: plan.data.interpolation,
            },
            augment: plan.augment.clone(),
            standardize: Standardize::new(&plan.augment, channels),
            on_bad_image: plan.data.on_bad_image,
            prefetch: plan.data.prefetch.max(1),
        }
    }
}

struct SplitInner {
    kind: SplitKind,
    items: Items,
    labels: Vec<usize>,
    pipeline: Arc<Pipeline>,
    /// Items at the target size once made: decoded files when the user opts
    /// in (`cache`), synthetic samples up to [`SYNTHETIC_KEPT_BYTES`].
    cache: Option<Vec<OnceLock<Arc<Pixels>>>>,
    /// Items left out under `on_bad_image = "skip"`: position -> reason.
    skipped: Mutex<BTreeMap<usize, String>>,
}

/// One part of a dataset (training, validation or test). Cheap to clone.
#[derive(Clone)]
pub struct Split {
    inner: Arc<SplitInner>,
}

impl Split {
    fn new(
        kind: SplitKind,
        items: Items,
        labels: Vec<usize>,
        pipeline: Arc<Pipeline>,
        cache: bool,
    ) -> Split {
        let keep = match &items {
            Items::Files(_) => cache,
            // Rendering is a pure function of (seed, split, index): keep the
            // samples once drawn, as the IDX images are, while they are small.
            Items::Synthetic { .. } => {
                let t = &pipeline.target;
                labels.len() * t.height * t.width * t.channels <= SYNTHETIC_KEPT_BYTES
            }
            Items::Idx { .. } => false,
        };
        let cache = keep.then(|| (0..labels.len()).map(|_| OnceLock::new()).collect());
        Split {
            inner: Arc::new(SplitInner {
                kind,
                items,
                labels,
                pipeline,
                cache,
                skipped: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    /// Image files outside any dataset, for a trained model to classify
    /// (`runner predict`): each is brought to model input exactly as the
    /// plan's evaluation brings its images (decode, channels, resize with
    /// the plan's interpolation, then `rescale` and `normalize`; never
    /// augmented), and an unreadable one is handled by the plan's
    /// `on_bad_image`. The files have no labels: each is given label 0.
    pub fn unlabeled_files(plan: &ExperimentPlan, files: Vec<PathBuf>) -> Split {
        let labels = vec![0; files.len()];
        Split::new(
            SplitKind::Test,
            Items::Files(files),
            labels,
            Arc::new(Pipeline::new(plan)),
            false,
        )
    }

    pub fn kind(&self) -> SplitKind {
        self.inner.kind
    }

    pub fn len(&self) -> usize {
        self.inner.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.labels.is_empty()
    }

    pub fn label(&self, index: usize) -> usize {
        self.inner.labels[index]
    }

    pub fn labels(&self) -> &[usize] {
        &self.inner.labels
    }

    /// The file behind item `index`, for file-based sources.
    pub fn path(&self, index: usize) -> Option<&Path> {
        match &self.inner.items {
            Items::Files(files) => files.get(index).map(PathBuf::as_path),
            _ => None,
        }
    }

    /// Model input size: height, width, channels.
    pub fn input_shape(&self) -> [usize; 3] {
        let t = &self.inner.pipeline.target;
        [t.height, t.width, t.channels]
    }

    /// Batches kept ready ahead of the consumer.
    pub fn prefetch(&self) -> usize {
        self.inner.pipeline.prefetch
    }

    /// The size of the items as stored, for sources whose items all share
    /// one (IDX, synthetic); `None` for files.
    pub fn native_size(&self) -> Option<(u32, u32)> {
        match &self.inner.items {
            Items::Files(_) => None,
            Items::Idx { images, .. } => Some((images.cols as u32, images.rows as u32)),
            Items::Synthetic { generator, .. } => {
                Some((generator.width as u32, generator.height as u32))
            }
        }
    }

    /// Files whose header cannot be read (missing, empty, not an image, an
    /// unknown format), with the reason: a cheap check of every file that
    /// finds most unreadable images before training. One whose data is cut
    /// short after a good header is found only when it is decoded.
    pub fn unreadable_headers(&self) -> Vec<(PathBuf, String)> {
        use rayon::prelude::*;
        let Items::Files(files) = &self.inner.items else {
            return Vec::new();
        };
        let mut bad: Vec<(PathBuf, String)> = files
            .par_iter()
            .filter_map(|path| {
                let header = image::ImageReader::open(path)
                    .and_then(|r| r.with_guessed_format())
                    .map_err(|e| e.to_string())
                    .and_then(|r| r.into_dimensions().map_err(|e| e.to_string()));
                match header {
                    Ok((w, h)) if w > 0 && h > 0 => None,
                    Ok((w, h)) => Some((path.clone(), format!("the image is {w}x{h}"))),
                    Err(reason) => Some((path.clone(), decode::tidy_reason(&reason))),
                }
            })
            .collect();
        bad.sort();
        bad
    }

    /// Files left out so far under `on_bad_image = "skip"`, with the reason.
    pub fn skipped(&self) -> Vec<(PathBuf, String)> {
        let skipped = self.inner.skipped.lock().unwrap_or_else(|p| p.into_inner());
        skipped
            .iter()
            .map(|(&i, reason)| {
                (
                    self.path(i).map(Path::to_path_buf).unwrap_or_default(),
                    reason.clone(),
                )
            })
            .collect()
    }

    /// Item `index` at the model's size and channels, 8-bit, no augmentation.
    pub fn pixels(&self, index: usize) -> Result<Arc<Pixels>, DataError> {
        if let Some(cache) = &self.inner.cache {
            if let Some(p) = cache[index].get() {
                return Ok(p.clone());
            }
        }
        let target = &self.inner.pipeline.target;
        let pixels = match &self.inner.items {
            Items::Files(files) => {
                let path = &files[index];
                decode::load(path, target)
                    .map_err(|reason| DataError::BadImage {
                        path: path.clone(),
                        reason,
                    })?
                    .pixels
            }
            Items::Idx { images, rows } => {
                let raw = Pixels {
                    height: images.rows,
                    width: images.cols,
                    channels: 1,
                    data: images.image(rows[index]).to_vec(),
                };
                decode::resize(&decode::convert_channels(raw, target.channels), target)
            }
            Items::Synthetic { generator, split } => Pixels {
                height: target.height,
                width: target.width,
                channels: target.channels,
                data: generator.render(*split, index),
            },
        };
        let pixels = Arc::new(pixels);
        if let Some(cache) = &self.inner.cache {
            let _ = cache[index].set(pixels.clone());
        }
        Ok(pixels)
    }

    /// One preprocessed (not augmented) example as 8-bit gray or RGB at
    /// model size, for picture grids.
    pub fn image(&self, index: usize) -> Result<DynamicImage, DataError> {
        let p = self.pixels(index)?;
        Ok(to_image(&p))
    }

    /// Item `index` after the random augmentation of (`seed`, `epoch`),
    /// before `rescale` and `normalize`: what a training batch shows the
    /// model, as a picture.
    pub fn augmented_image(
        &self,
        index: usize,
        seed: u64,
        epoch: usize,
    ) -> Result<DynamicImage, DataError> {
        let f = self.frame(index, seed, epoch, true)?;
        let t = &self.inner.pipeline.target;
        Ok(to_image(&Pixels {
            height: t.height,
            width: t.width,
            channels: t.channels,
            data: f.to_u8(),
        }))
    }

    /// The random augmentation of item `index` in (`seed`, `epoch`): none
    /// unless asked for and configured.
    fn params(&self, index: usize, seed: u64, epoch: usize, augment: bool) -> Params {
        let plan = &self.inner.pipeline.augment;
        if augment && plan.is_random() {
            let t = &self.inner.pipeline.target;
            let mut rng = split::rng(&[split::TAG_AUGMENT, seed, epoch as u64, index as u64]);
            Params::draw(plan, t.height, t.width, &mut rng)
        } else {
            Params::default()
        }
    }

    /// Item `index` in 0-255 floats, augmented when asked.
    fn frame(
        &self,
        index: usize,
        seed: u64,
        epoch: usize,
        augment: bool,
    ) -> Result<Frame, DataError> {
        let p = self.pixels(index)?;
        let frame = Frame::from_u8(p.height, p.width, p.channels, &p.data);
        let params = self.params(index, seed, epoch, augment);
        Ok(augment::apply(frame, &params, &self.inner.pipeline.augment))
    }

    /// Write item `index` as model input (CHW floats) into `out`, in one pass.
    fn fill(
        &self,
        index: usize,
        seed: u64,
        epoch: usize,
        augment: bool,
        out: &mut [f32],
    ) -> Result<(), DataError> {
        let p = self.pixels(index)?;
        let params = self.params(index, seed, epoch, augment);
        let pipe = &self.inner.pipeline;
        augment::render_chw(
            &p.data,
            p.height,
            p.width,
            p.channels,
            &params,
            &pipe.augment,
            &pipe.standardize,
            out,
        );
        Ok(())
    }

    /// What happens to an image that cannot be decoded.
    pub fn bad_image_policy(&self) -> BadImagePolicy {
        self.inner.pipeline.on_bad_image
    }

    fn skip_policy(&self) -> BadImagePolicy {
        self.inner.pipeline.on_bad_image
    }

    fn record_skip(&self, index: usize, reason: String) {
        let mut skipped = self.inner.skipped.lock().unwrap_or_else(|p| p.into_inner());
        skipped.insert(index, reason);
    }

    /// One epoch of batches. See [`loader`].
    pub fn batches(&self, opts: &BatchOptions) -> Batches {
        loader::start(self.clone(), opts.clone())
    }
}

fn to_image(p: &Pixels) -> DynamicImage {
    // `Pixels` built here always match their size; fall back to black if not.
    p.to_image()
        .unwrap_or_else(|| DynamicImage::new_rgb8(p.width as u32, p.height as u32))
}

impl Dataset {
    /// Under `on_bad_image = "fail"`, refuse files whose header cannot be
    /// read, before any training ([`Split::unreadable_headers`]).
    pub fn check_headers(&self) -> Result<(), DataError> {
        if self.train.bad_image_policy() != BadImagePolicy::Fail {
            return Ok(());
        }
        let bad: Vec<(PathBuf, String)> = self
            .splits()
            .into_iter()
            .flat_map(Split::unreadable_headers)
            .collect();
        match bad.first() {
            None => Ok(()),
            Some((first, reason)) => Err(DataError::BadImages {
                count: bad.len(),
                first: first.clone(),
                reason: reason.clone(),
            }),
        }
    }

    /// Files left out under `on_bad_image = "skip"` so far, in every split.
    pub fn skipped(&self) -> Vec<(PathBuf, String)> {
        self.splits().into_iter().flat_map(Split::skipped).collect()
    }

    /// Scan and validate the source described by the plan: list files,
    /// check folders, meta files and IDX headers, split off validation.
    /// Images are not decoded here.
    pub fn open(plan: &ExperimentPlan) -> Result<Dataset, DataError> {
        let [height, width, channels] = plan.model.input;
        let data = &plan.data;
        let pipeline = Arc::new(Pipeline::new(plan));
        let seed = plan.seed;
        let cache = data.cache;
        let split = |kind, items, labels| Split::new(kind, items, labels, pipeline.clone(), cache);
        let mut notes = Vec::new();
        // Every folder the config names, before any is read (`runner check`
        // warns of the same ones).
        if let Some(missing) = missing_folders(&data.source).into_iter().next() {
            return Err(missing);
        }

        let (classes, train, validation, test, validation_from) = match &data.source {
            SourcePlan::ImageFolder {
                path,
                classes: select,
                validation,
                test_path,
            } => {
                let available = image_folder::class_dirs(path)?;
                image_folder::refuse_split_folders(path, &available)?;
                let classes = image_folder::select_classes(&available, select.as_ref(), path)?;
                let (files, labels) = image_folder::scan(path, &classes)?;
                let (train, validation, from) = match validation {
                    Holdout::Split(fraction) => {
                        let fraction = *fraction;
                        let (t, v) = split_files(files, labels, fraction, seed);
                        (
                            split(SplitKind::Train, Items::Files(t.0), t.1),
                            Some(split(SplitKind::Validation, Items::Files(v.0), v.1)),
                            report::ValidationFrom::Split { fraction, seed },
                        )
                    }
                    Holdout::Folder(vp) => {
                        let (vf, vl) = image_folder::scan(vp, &classes)?;
                        (
                            split(SplitKind::Train, Items::Files(files), labels),
                            Some(split(SplitKind::Validation, Items::Files(vf), vl)),
                            report::ValidationFrom::Folder(vp.clone()),
                        )
                    }
                    Holdout::None | Holdout::Test => (
                        split(SplitKind::Train, Items::Files(files), labels),
                        None,
                        report::ValidationFrom::None,
                    ),
                };
                let test = match test_path {
                    Some(tp) => {
                        let (tf, tl) = image_folder::scan(tp, &classes)?;
                        Some(split(SplitKind::Test, Items::Files(tf), tl))
                    }
                    None => None,
                };
                if available.len() > classes.len() {
                    notes.push(format!(
                        "using {} of the {} class folders",
                        classes.len(),
                        available.len()
                    ));
                }
                (classes, train, validation, test, from)
            }
            SourcePlan::Food101 {
                path,
                classes,
                validation,
            } => {
                let f = food101::scan(path, classes.as_ref())?;
                let (train, validation, from) = match *validation {
                    Holdout::Split(fraction) => {
                        let (t, v) = split_files(f.train.files, f.train.labels, fraction, seed);
                        (
                            split(SplitKind::Train, Items::Files(t.0), t.1),
                            Some(split(SplitKind::Validation, Items::Files(v.0), v.1)),
                            report::ValidationFrom::Split { fraction, seed },
                        )
                    }
                    _ => (
                        split(
                            SplitKind::Train,
                            Items::Files(f.train.files),
                            f.train.labels,
                        ),
                        None,
                        report::ValidationFrom::None,
                    ),
                };
                let test = Some(split(
                    SplitKind::Test,
                    Items::Files(f.test.files),
                    f.test.labels,
                ));
                (f.classes, train, validation, test, from)
            }
            SourcePlan::Idx {
                folder: _,
                train_images: train_images_file,
                train_labels: train_labels_file,
                test_images: test_images_file,
                test_labels: test_labels_file,
                class_names,
                validation,
            } => {
                let (train_images, train_labels) =
                    read_idx_pair(train_images_file, train_labels_file)?;
                let (test_images, test_labels) = read_idx_pair(test_images_file, test_labels_file)?;
                let max_label = train_labels
                    .iter()
                    .chain(&test_labels)
                    .copied()
                    .max()
                    .unwrap_or(0) as usize;
                let classes: Vec<String> = match class_names {
                    Some(names) => {
                        for (file, labels) in [
                            (train_labels_file, &train_labels),
                            (test_labels_file, &test_labels),
                        ] {
                            if let Some((index, &label)) = labels
                                .iter()
                                .enumerate()
                                .find(|(_, &l)| l as usize >= names.len())
                            {
                                return Err(DataError::BadLabel {
                                    path: file.clone(),
                                    label: label as usize,
                                    index,
                                    classes: names.len(),
                                });
                            }
                        }
                        names.clone()
                    }
                    None => (0..=max_label).map(|l| l.to_string()).collect(),
                };
                let train_labels: Vec<usize> = train_labels.iter().map(|&l| l as usize).collect();
                let test_labels: Vec<usize> = test_labels.iter().map(|&l| l as usize).collect();
                let train_images = Arc::new(train_images);
                let idx_items = |images: &Arc<IdxImages>, rows: Vec<usize>| Items::Idx {
                    images: images.clone(),
                    rows,
                };
                let test_images = Arc::new(test_images);
                let test_rows: Vec<usize> = (0..test_labels.len()).collect();
                let (train, validation, from) = match *validation {
                    Holdout::Split(fraction) => {
                        let (t, v) = split::stratified(&train_labels, fraction, seed);
                        let tl = t.iter().map(|&i| train_labels[i]).collect();
                        let vl = v.iter().map(|&i| train_labels[i]).collect();
                        (
                            split(SplitKind::Train, idx_items(&train_images, t), tl),
                            Some(split(
                                SplitKind::Validation,
                                idx_items(&train_images, v),
                                vl,
                            )),
                            report::ValidationFrom::Split { fraction, seed },
                        )
                    }
                    Holdout::None | Holdout::Folder(_) | Holdout::Test => {
                        let rows = (0..train_labels.len()).collect();
                        let train = split(
                            SplitKind::Train,
                            idx_items(&train_images, rows),
                            train_labels,
                        );
                        if *validation == Holdout::Test {
                            let items = idx_items(&test_images, test_rows.clone());
                            let validation =
                                split(SplitKind::Validation, items, test_labels.clone());
                            (train, Some(validation), report::ValidationFrom::Test)
                        } else {
                            (train, None, report::ValidationFrom::None)
                        }
                    }
                };
                let test = Some(split(
                    SplitKind::Test,
                    idx_items(&test_images, test_rows),
                    test_labels,
                ));
                (classes, train, validation, test, from)
            }
            &SourcePlan::Synthetic {
                classes,
                train_size,
                validation_size,
                test_size,
                noise,
            } => {
                let generator = Arc::new(Generator {
                    seed,
                    classes,
                    height,
                    width,
                    channels,
                    noise,
                });
                let synth = |kind, id, n: usize| {
                    let labels = (0..n).map(|i| generator.label(i)).collect();
                    split(
                        kind,
                        Items::Synthetic {
                            generator: generator.clone(),
                            split: id,
                        },
                        labels,
                    )
                };
                let train = synth(SplitKind::Train, SplitId::Train, train_size);
                let validation = (validation_size > 0)
                    .then(|| synth(SplitKind::Validation, SplitId::Validation, validation_size));
                let test = Some(synth(SplitKind::Test, SplitId::Test, test_size));
                let classes = synthetic::CLASS_NAMES[..classes]
                    .iter()
                    .map(|s| s.to_string())
                    .collect();
                let from = if validation.is_some() {
                    report::ValidationFrom::Generated
                } else {
                    report::ValidationFrom::None
                };
                (classes, train, validation, test, from)
            }
        };

        if classes.len() != plan.model.num_classes {
            return Err(DataError::class_count(
                classes.len(),
                plan.model.num_classes,
                plan.model.classes_key(),
            ));
        }
        let report = DataReport::new(
            &plan.data,
            &classes,
            &train,
            validation.as_ref(),
            test.as_ref(),
            validation_from,
            notes,
        );
        Ok(Dataset {
            classes,
            train,
            validation,
            test,
            report: Arc::new(report),
        })
    }

    /// Class list and per-split counts (the dataset's identity in meta.json).
    pub fn fingerprint(&self) -> DataFingerprint {
        self.report.fingerprint()
    }

    /// What `runner data` prints: classes and counts per split.
    pub fn report(&self) -> &DataReport {
        &self.report
    }

    /// The splits that exist, in order.
    pub fn splits(&self) -> Vec<&Split> {
        std::iter::once(&self.train)
            .chain(self.validation.as_ref())
            .chain(self.test.as_ref())
            .collect()
    }
}

type FilesAndLabels = (Vec<PathBuf>, Vec<usize>);

fn split_files(
    files: Vec<PathBuf>,
    labels: Vec<usize>,
    fraction: f64,
    seed: u64,
) -> (FilesAndLabels, FilesAndLabels) {
    let (t, v) = split::stratified(&labels, fraction, seed);
    let pick = |positions: &[usize]| -> FilesAndLabels {
        (
            positions.iter().map(|&i| files[i].clone()).collect(),
            positions.iter().map(|&i| labels[i]).collect(),
        )
    };
    (pick(&t), pick(&v))
}

/// The folders `source` names that do not exist, each as the error opening
/// the data would give (what it is, its key, the source's remedy or a
/// sibling one typo away): what `runner check` warns of without reading any.
pub fn missing_folders(source: &SourcePlan) -> Vec<DataError> {
    let (path, what, remedy, validation, test) = match source {
        SourcePlan::ImageFolder {
            path,
            validation,
            test_path,
            ..
        } => (path, "data folder", None, validation, test_path.as_deref()),
        SourcePlan::Food101 {
            path, validation, ..
        } => (
            path,
            "Food-101 folder",
            Some(food101::DOWNLOAD),
            validation,
            None,
        ),
        SourcePlan::Idx {
            folder, validation, ..
        } => (folder, "IDX folder", Some(IDX_REMEDY), validation, None),
        SourcePlan::Synthetic { .. } => return Vec::new(),
    };
    // In the order the data is opened.
    let mut named = vec![(path.as_path(), what, "data.path", remedy)];
    if let Holdout::Folder(p) = validation {
        named.push((p, "validation folder", "data.validation_path", None));
    }
    named.extend(test.map(|p| (p, "test folder", "data.test_path", None)));
    named
        .into_iter()
        .filter(|(path, ..)| !path.is_dir())
        .map(|(path, what, key, remedy)| missing::folder(path, what, key, remedy))
        .collect()
}

fn read_idx_pair(images: &Path, labels: &Path) -> Result<(IdxImages, Vec<u8>), DataError> {
    let imgs = idx::read_images(images).map_err(with_idx_help)?;
    let lbls = idx::read_labels(labels).map_err(with_idx_help)?;
    if imgs.count != lbls.len() {
        return Err(DataError::IdxCountMismatch {
            images_path: images.to_path_buf(),
            images: imgs.count,
            labels_path: labels.to_path_buf(),
            labels: lbls.len(),
        });
    }
    Ok((imgs, lbls))
}

/// Where to get IDX data, for a folder or file that is not there.
const IDX_REMEDY: &str = "`make data` installs Fashion-MNIST (Debian package dataset-fashion-mnist) into /usr/share/datasets/fashion-mnist; \
                          or set `data.path` to a folder holding the four IDX files";

fn with_idx_help(e: DataError) -> DataError {
    match e {
        DataError::MissingFile {
            path, what, key, ..
        } => DataError::MissingFile {
            path,
            what,
            key,
            help: Some(IDX_REMEDY.into()),
        },
        other => other,
    }
}
