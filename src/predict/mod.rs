//! A trained run's model on image files (`runner predict RUN IMAGES...`):
//! class probabilities per image, as a table, a CSV and optionally a
//! picture grid.
//!
//! Everything comes from the run folder: the resolved config and its plan
//! (model, input size, resize filter, `rescale`/`normalize`,
//! `on_bad_image`), a checkpoint's weights and the class names of its
//! meta.json, so the training data is never needed. Images go through the
//! data module's own pipeline ([`Split::unlabeled_files`]), exactly as the
//! run's evaluation saw its test images, in batches on the chosen device.
//!
//! Files: [`inputs`] (the image arguments as files), [`output`] (table,
//! CSV, grid), [`error`]. Imports run one way: mod -> inputs, output ->
//! error.

mod error;
mod inputs;
mod output;

use std::path::{Path, PathBuf};

use burn::tensor::activation::softmax;
use burn::tensor::{Tensor, TensorData};

use crate::backend::{self, TrainBackend, WithBackend};
use crate::config;
use crate::data::{BatchOptions, Split};
use crate::device::{self, Device, DeviceRequest};
use crate::model::{ConvOps, Net};
use crate::plan::{self, ModelPlan};
use crate::report::plots;
use crate::rundir::{check_writable_file, write_atomic, RunDir};
use crate::train::checkpoint::{self, Checkpoints};
use crate::vocab::BadImagePolicy;

pub use error::PredictError;
pub use output::{Predictions, Row, GRID_MAX};

/// What `runner predict` was asked.
#[derive(Debug, Clone)]
pub struct PredictRequest {
    /// The run folder (`.../latest` already resolved).
    pub run_dir: PathBuf,
    /// Image files, folders (searched recursively) or glob patterns.
    pub images: Vec<String>,
    /// `final`, `best`, `last` or `epoch-N`.
    pub checkpoint: String,
    /// Images per forward pass; the run's `train.batch_size` when unset.
    pub batch_size: Option<usize>,
    /// cpu, cuda, cuda:N or wgpu; the run's `runtime.device` when unset.
    pub device: Option<String>,
    /// Classes listed per image (at most the number of classes).
    pub top_k: usize,
    /// Where predictions.csv goes.
    pub output: PathBuf,
    /// Where to draw the picture grid, if anywhere.
    pub grid: Option<PathBuf>,
    /// Also write every class's logit to the CSV.
    pub logits: bool,
    /// Leave unreadable images out, whatever the run's `on_bad_image`.
    pub skip_bad_images: bool,
}

/// What was predicted and written.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub device: Device,
    /// The weights used.
    pub checkpoint: PathBuf,
    pub predictions: Predictions,
    /// The top-k in effect (capped at the number of classes).
    pub top_k: usize,
    /// The CSV written.
    pub output: PathBuf,
    /// The grid written, and how many images it shows.
    pub grid: Option<(PathBuf, usize)>,
}

impl Outcome {
    /// Everything the command prints: device, checkpoint, the table, the
    /// images left out and the files written.
    pub fn render(&self) -> String {
        let p = &self.predictions;
        let mut out = format!(
            "Device: {}\nCheckpoint: {}\n\n{}\n",
            self.device,
            self.checkpoint.display(),
            p.render_table(self.top_k)
        );
        out.push_str(&p.render_skipped());
        out.push_str(&p.render_not_images());
        out.push_str(&format!(
            "Predictions: {} ({} image(s), top {})\n",
            self.output.display(),
            p.rows.len(),
            self.top_k
        ));
        if let Some((path, shown)) = &self.grid {
            let note = if *shown < p.rows.len() {
                format!(" (the first {shown} of {} images)", p.rows.len())
            } else {
                String::new()
            };
            out.push_str(&format!("Grid: {}{note}\n", path.display()));
        }
        out
    }
}

/// A layer's name and its parameters, each flattened.
pub type LayerWeights = (String, Vec<Vec<f32>>);

/// The parameters of every layer of a run's checkpoint `checkpoint`, by
/// layer name, each flattened in burn's order (read on the CPU). For
/// comparing runs, e.g. that a frozen layer kept its weights.
pub fn layer_weights(run_dir: &Path, checkpoint: &str) -> Result<Vec<LayerWeights>, PredictError> {
    use burn::module::{Module, ModuleVisitor, Param};
    type Cpu = burn::backend::Flex;
    struct Collect(Vec<Vec<f32>>);
    impl ModuleVisitor<Cpu> for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<Cpu, D>>) {
            let data = param.val().into_data().convert::<f32>();
            self.0.push(data.to_vec::<f32>().unwrap_or_default());
        }
    }
    let run = RunDir::open(run_dir)?;
    let loaded = config::load_exact(&run.resolved_config())?;
    let plan = plan::plan_saved(&loaded)?;
    let model_file = Checkpoints::new(run.checkpoints()).model_file(checkpoint)?;
    let device = Default::default();
    let net = Net::<Cpu>::init(&plan.model, &device);
    let net = checkpoint::load_model_file(&model_file, net, &device)?;
    Ok(plan
        .model
        .layers
        .iter()
        .zip(&net.layers)
        .map(|(lp, layer)| {
            let mut c = Collect(Vec::new());
            layer.visit(&mut c);
            (lp.name.clone(), c.0)
        })
        .collect())
}

/// Classify the images of `req` with the run's model: read the run,
/// expand the image arguments, predict in batches, write predictions.csv
/// (and the grid) atomically.
pub fn predict(req: &PredictRequest) -> Result<Outcome, PredictError> {
    let run = RunDir::open(&req.run_dir)?;
    let loaded = config::load_exact(&run.resolved_config())?;
    let mut plan = plan::plan_saved(&loaded)?;
    let classes = classes(&run, plan.model.num_classes)?;
    // Before the work, which may be long.
    for path in std::iter::once(&req.output).chain(&req.grid) {
        check_writable_file(path)?;
    }
    let inputs = inputs::expand(&req.images)?;
    if req.skip_bad_images {
        plan.data.on_bad_image = BadImagePolicy::Skip;
    }
    let model_file = Checkpoints::new(run.checkpoints()).model_file(&req.checkpoint)?;
    if let Some(d) = &req.device {
        plan.device = d
            .parse::<DeviceRequest>()
            .map_err(PredictError::BadDevice)?;
    }
    let device = device::resolve(plan.device)?;
    backend::prepare_gpu(device)?;
    let threads = device::cpu_threads(plan.threads);
    backend::configure_cpu(threads);

    let batch_size = req.batch_size.unwrap_or(plan.train.batch_size).max(1);
    let split = Split::unlabeled_files(&plan, inputs.files);
    let job = Infer {
        model: &plan.model,
        model_file: &model_file,
        split: &split,
        batch_size,
        pad: device.is_gpu(),
    };
    let scores = backend::run_on(device, threads, batch_size, job)??;
    let skipped = split.skipped();
    if scores.indices.is_empty() {
        let (first, reason) = skipped.first().cloned().unwrap_or_default();
        return Err(PredictError::NoneReadable {
            count: split.len(),
            first,
            reason,
        });
    }
    let rows = scores
        .indices
        .into_iter()
        .zip(scores.probabilities)
        .zip(scores.logits)
        .map(|((index, probabilities), logits)| Row {
            index,
            path: split.path(index).map(Path::to_path_buf).unwrap_or_default(),
            probabilities,
            logits,
        })
        .collect();
    let top_k = req.top_k.clamp(1, classes.len().max(1));
    let predictions = Predictions {
        classes,
        rows,
        skipped,
        not_images: inputs.others,
    };
    write_atomic(&req.output, predictions.csv(top_k, req.logits).as_bytes())?;
    let grid = match &req.grid {
        Some(path) => {
            let img = predictions.grid(&split)?;
            write_atomic(path, &plots::encode_png(&img)?)?;
            Some((path.clone(), predictions.rows.len().min(GRID_MAX)))
        }
        None => None,
    };
    Ok(Outcome {
        device,
        checkpoint: model_file,
        predictions,
        top_k,
        output: req.output.clone(),
        grid,
    })
}

/// The class names the run trained on, from its meta.json's dataset
/// fingerprint (only its `classes` are read).
fn classes(run: &RunDir, outputs: usize) -> Result<Vec<String>, PredictError> {
    let classes = run
        .read_meta()?
        .class_names()
        .ok_or_else(|| PredictError::NoClasses {
            run: run.root().to_path_buf(),
        })?;
    if classes.len() != outputs {
        return Err(PredictError::ClassCount {
            run: run.root().to_path_buf(),
            found: classes.len(),
            model: outputs,
        });
    }
    Ok(classes)
}

/// Class probabilities of the items of a split, in the order they came.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scores {
    /// Positions in the split (items skipped as unreadable are missing).
    pub indices: Vec<usize>,
    /// One row per item, one probability per class.
    pub probabilities: Vec<Vec<f32>>,
    /// One row per item: the network's outputs before the softmax.
    pub logits: Vec<Vec<f32>>,
}

/// The checkpoint's probabilities on a split, on the chosen backend.
struct Infer<'a> {
    model: &'a ModelPlan,
    model_file: &'a Path,
    split: &'a Split,
    batch_size: usize,
    pad: bool,
}

impl WithBackend for Infer<'_> {
    type Output = Result<Scores, PredictError>;

    fn run<B: TrainBackend>(self, device: B::Device) -> Self::Output {
        let net = Net::<B::InnerBackend>::init(self.model, &device);
        let net = checkpoint::load_model_file(self.model_file, net, &device)?;
        probabilities(&net, self.split, self.batch_size, self.pad, &device)
    }
}

/// `net`'s class probabilities and logits on every item of `split`, in
/// batches of `batch_size` as evaluation forms them (in order, not
/// augmented). With `pad` (a GPU), a short batch is filled up with zero
/// images so every forward pass has one shape; their rows are dropped.
/// The probabilities are the softmax of the logits: the softmax folded
/// into the loss, or the one a network that ends in logits needs. All rows
/// are read back at the end.
pub fn probabilities<B: ConvOps>(
    net: &Net<B>,
    split: &Split,
    batch_size: usize,
    pad: bool,
    device: &B::Device,
) -> Result<Scores, PredictError> {
    let batch_size = batch_size.max(1);
    let opts = BatchOptions {
        batch_size,
        epoch: 0,
        seed: 0,
        shuffle: false,
        augment: false,
        max_batches: None,
    };
    let pad_to = pad.then_some(batch_size.min(split.len()));
    let mut indices = Vec::with_capacity(split.len());
    let mut outputs = Vec::new();
    let mut logits = Vec::new();
    for batch in split.batches(&opts) {
        let batch = batch?;
        let [n, c, h, w] = batch.shape;
        let rows = pad_to.map_or(n, |p| p.max(n));
        let mut images = batch.images;
        images.resize(rows * c * h * w, 0.0);
        let x = Tensor::<B, 4>::from_data(TensorData::new(images, [rows, c, h, w]), device);
        let mut out = net.forward(x);
        if rows > n {
            out = out.narrow(0, 0, n);
        }
        outputs.push(softmax(out.clone(), 1));
        logits.push(out);
        indices.extend(batch.indices);
    }
    if outputs.is_empty() {
        return Ok(Scores::default());
    }
    let classes = outputs[0].dims()[1];
    let rows = |parts: Vec<Tensor<B, 2>>| -> Result<Vec<Vec<f32>>, PredictError> {
        let flat: Vec<f32> = Tensor::cat(parts, 0)
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .map_err(|e| PredictError::Readback(format!("{e:?}")))?;
        if classes == 0 || flat.len() != indices.len() * classes {
            return Err(PredictError::Readback(format!(
                "{} values for {} images of {classes} classes",
                flat.len(),
                indices.len()
            )));
        }
        Ok(flat.chunks_exact(classes).map(<[f32]>::to_vec).collect())
    };
    Ok(Scores {
        probabilities: rows(outputs)?,
        logits: rows(logits)?,
        indices,
    })
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;

    use super::*;
    use crate::config::LoadOptions;
    use crate::data::{fixtures, Dataset};

    /// An experiment on `data` whose network ends in `last` (an activation).
    fn plan_from(dir: &Path, data: &str, last: &str) -> crate::plan::ExperimentPlan {
        let text = format!(
            r#"
[experiment]
name = "t"
seed = 5

[data]
{data}

[augment]
rescale = "1/255"
normalize = {{ mean = [0.4, 0.5, 0.3], std = [0.2, 0.25, 0.3] }}
rotation_range = 30
horizontal_flip = true
brightness_range = [0.5, 1.5]

[model]
input_shape = [10, 8, 3]
layers = [
  {{ type = "conv2d", filters = 3, kernel = 3, activation = "relu" }},
  {{ type = "flatten" }},
  {{ type = "dense", units = 3, activation = "{last}" }},
]

[callbacks.checkpoint]
monitor = "loss"
"#
        );
        let path = dir.join("exp.toml");
        std::fs::write(&path, text).expect("write");
        let loaded = config::load(&path, &LoadOptions::default()).expect("config loads");
        plan::plan(&loaded).expect("plan validates")
    }

    /// Predict brings files to the model exactly as evaluation brings its
    /// test split (resize filter, gray JPEGs, rescale and normalize, no
    /// augmentation), whatever the batch size or padding.
    #[test]
    fn probabilities_agree_with_the_evaluation_of_the_same_images() {
        let dir = tempfile::tempdir().expect("tempdir");
        let classes = ["cat", "dog", "eel"];
        fixtures::image_folder(&dir.path().join("train"), &classes, 2, (20, 14), "png")
            .expect("fixture");
        let test = dir.path().join("test");
        fixtures::image_folder(&test, &classes, 3, (23, 17), "jpg").expect("fixture");
        // One gray image: channels are converted as for the test split.
        let gray = image::DynamicImage::ImageRgb8(fixtures::picture(1, 2, 9, 30, 12, 0.1));
        gray.to_luma8()
            .save(test.join("eel/gray.png"))
            .expect("gray png");
        let data = format!(
            "source = \"image_folder\"\npath = \"{}\"\ntest_path = \"{}\"\ninterpolation = \"bilinear\"",
            dir.path().join("train").display(),
            test.display()
        );
        let plan = plan_from(dir.path(), &data, "softmax");
        let dataset = Dataset::open(&plan).expect("dataset");
        let split = dataset.test.expect("a test split");
        let device = Default::default();
        let net = Net::<Flex>::init(&plan.model, &device);
        let eval = crate::train::predict(&net, &split, 4, false, &device).expect("evaluates");
        assert_eq!(eval.indices.len(), 10);

        let files = inputs::expand(&[test.display().to_string()])
            .expect("files")
            .files;
        let ours = Split::unlabeled_files(&plan, files);
        for (batch_size, pad) in [(5, false), (4, true), (32, false)] {
            let scores = probabilities(&net, &ours, batch_size, pad, &device).expect("predicts");
            assert_eq!(scores.indices, (0..10).collect::<Vec<_>>());
            for (e, &i) in eval.indices.iter().enumerate() {
                let path = split.path(i).expect("a file");
                assert_eq!(ours.path(i), Some(path), "the same order as the test split");
                let row = Row {
                    index: i,
                    path: path.to_path_buf(),
                    probabilities: scores.probabilities[i].clone(),
                    logits: scores.logits[i].clone(),
                };
                // The probabilities are the softmax of the logits.
                let top = row.logits.iter().copied().fold(f32::MIN, f32::max);
                let z: f32 = row.logits.iter().map(|l| (l - top).exp()).sum();
                for (l, p) in row.logits.iter().zip(&row.probabilities) {
                    assert!(((l - top).exp() / z - p).abs() < 1e-6, "{l} {p}");
                }
                let sum: f32 = row.probabilities.iter().sum();
                assert!((sum - 1.0).abs() < 1e-5, "{sum}");
                let (class, p) = row.predicted().expect("a class");
                assert_eq!(class, eval.predicted[e], "{}", path.display());
                assert!(
                    (p - eval.confidence[e]).abs() < 1e-6,
                    "{}: {p} vs {}",
                    path.display(),
                    eval.confidence[e]
                );
            }
        }
    }

    /// A network that ends in a linear layer outputs logits: probabilities
    /// are their softmax.
    #[test]
    fn logits_get_a_softmax() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = fixtures::image_folder(dir.path(), &["a", "b", "c"], 2, (10, 8), "png")
            .expect("fixture");
        let data = format!(
            "source = \"image_folder\"\npath = \"{}\"",
            dir.path().display()
        );
        let plan = plan_from(dir.path(), &data, "linear");
        let device = Default::default();
        let net = Net::<Flex>::init(&plan.model, &device);
        assert!(!net.folded_softmax);
        let split = Split::unlabeled_files(&plan, files);
        let scores = probabilities(&net, &split, 3, false, &device).expect("predicts");
        assert_eq!(scores.probabilities.len(), 6);
        for p in &scores.probabilities {
            assert!(p.iter().all(|v| (0.0..=1.0).contains(v)), "{p:?}");
            assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-5, "{p:?}");
        }
    }
}
