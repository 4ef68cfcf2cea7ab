//! TensorBoard event files laid out as Keras's `TensorBoard` callback does:
//! `train/` and `validation/` under the run folder, one event file per folder
//! and per [`TensorboardLog::open`], tags [`EPOCH_LOSS`], [`EPOCH_ACCURACY`],
//! [`EPOCH_LEARNING_RATE`] (train only) at step = epoch counted from 0, and
//! optional [`BATCH_LOSS`], [`BATCH_ACCURACY`] in `train/` at a global batch step.
//!
//! A resumed run opens new event files in the same folders; TensorBoard merges
//! all event files of a folder into one run.

use std::collections::HashMap;
use std::fs;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::codecs::png::PngDecoder;
use image::{ColorType, ImageDecoder};
use protobuf::{Message, RepeatedField};
use tensorboard_proto::attr_value::{AttrValue, AttrValue_ListValue};
use tensorboard_proto::graph::GraphDef;
use tensorboard_proto::node_def::NodeDef;
use tensorboard_proto::plugin_text::TextPluginData;
use tensorboard_proto::summary::{
    Summary, SummaryMetadata, SummaryMetadata_PluginData, Summary_Image, Summary_Value,
};
use tensorboard_proto::tensor::TensorProto;
use tensorboard_proto::tensor_shape::{TensorShapeProto, TensorShapeProto_Dim};
use tensorboard_proto::types::DataType;

use super::event_file::EventFile;
use super::LogError;

pub const EPOCH_LOSS: &str = "epoch_loss";
pub const EPOCH_ACCURACY: &str = "epoch_accuracy";
pub const EPOCH_LEARNING_RATE: &str = "epoch_learning_rate";
pub const BATCH_LOSS: &str = "batch_loss";
pub const BATCH_ACCURACY: &str = "batch_accuracy";

/// One node of a graph for TensorBoard's GRAPHS tab, a layer say.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphNode {
    pub name: String,
    /// What it does (a layer's class, `Conv2D`).
    pub op: String,
    /// The nodes whose outputs it reads.
    pub inputs: Vec<String>,
    /// Its output's shape, -1 for a size that varies (the batch): the label
    /// of the edges that leave it.
    pub output_shape: Vec<i64>,
    /// Shown, as text, in the node's info card.
    pub attrs: Vec<(String, String)>,
}

/// Which subfolder (TensorBoard run) a summary goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    Train,
    Validation,
}

impl Stream {
    /// The subfolder's name, as Keras names it.
    pub fn dir_name(self) -> &'static str {
        match self {
            Stream::Train => "train",
            Stream::Validation => "validation",
        }
    }
}

/// The event writers of one run folder. A stream's file is created on its
/// first summary, so a run without validation has no `validation/` folder.
pub struct TensorboardLog {
    run_dir: PathBuf,
    train: Option<EventFile>,
    validation: Option<EventFile>,
}

impl TensorboardLog {
    /// Open (or reopen after a resume: new event file, same folders) the
    /// writers under `run_dir`, which is created if missing.
    pub fn open(run_dir: &Path) -> Result<Self, LogError> {
        fs::create_dir_all(run_dir).map_err(|source| LogError::CreateDir {
            path: run_dir.to_path_buf(),
            source,
        })?;
        Ok(TensorboardLog {
            run_dir: run_dir.to_path_buf(),
            train: None,
            validation: None,
        })
    }

    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    fn writer(&mut self, stream: Stream) -> Result<&mut EventFile, LogError> {
        let slot = match stream {
            Stream::Train => &mut self.train,
            Stream::Validation => &mut self.validation,
        };
        let writer = match slot.take() {
            Some(writer) => writer,
            None => EventFile::create(&self.run_dir.join(stream.dir_name()))?,
        };
        Ok(slot.insert(writer))
    }

    /// One scalar; TensorBoard stores it as f32.
    pub fn scalar(
        &mut self,
        stream: Stream,
        tag: &str,
        step: i64,
        value: f64,
    ) -> Result<(), LogError> {
        let summary = tensorboard_rs::summary::scalar(tag, value as f32);
        self.writer(stream)?.write_summary(summary, step)
    }

    /// A PNG (already encoded) as an image summary, e.g. tag
    /// "evaluation/confusion_matrix". `width` and `height` must match the PNG.
    pub fn image_png(
        &mut self,
        stream: Stream,
        tag: &str,
        step: i64,
        png: &[u8],
        width: u32,
        height: u32,
    ) -> Result<(), LogError> {
        let colorspace = check_png(tag, png, width, height)?;
        let mut image = Summary_Image::new();
        image.set_width(to_i32(width));
        image.set_height(to_i32(height));
        image.set_colorspace(colorspace);
        image.set_encoded_image_string(png.to_vec());
        let mut value = Summary_Value::new();
        value.set_tag(tag.to_string());
        value.set_image(image);
        self.writer(stream)?.write_summary(summary_of(value), step)
    }

    /// A Markdown text summary (text plugin), e.g. the resolved config under
    /// tag "config".
    pub fn text(
        &mut self,
        stream: Stream,
        tag: &str,
        step: i64,
        markdown: &str,
    ) -> Result<(), LogError> {
        let mut tensor = TensorProto::new();
        tensor.set_dtype(DataType::DT_STRING);
        tensor.set_tensor_shape(TensorShapeProto::new()); // a scalar
        tensor.set_string_val(RepeatedField::from_vec(vec![markdown.as_bytes().to_vec()]));
        let mut value = Summary_Value::new();
        value.set_tag(tag.to_string());
        value.set_metadata(plugin_metadata(
            "text",
            &TextPluginData::new(),
            &self.run_dir,
        )?);
        value.set_tensor(tensor);
        self.writer(stream)?.write_summary(summary_of(value), step)
    }

    /// A histogram of `values` (histograms plugin, as `tf.summary.histogram`
    /// writes it): [`HISTOGRAM_BUCKETS`] buckets, a `[k, 3]` tensor of left
    /// edge, right edge and count. TensorBoard's HISTOGRAMS and
    /// DISTRIBUTIONS tabs show it.
    pub fn histogram(
        &mut self,
        stream: Stream,
        tag: &str,
        step: i64,
        values: &[f32],
    ) -> Result<(), LogError> {
        let buckets = histogram_buckets(values, HISTOGRAM_BUCKETS);
        let mut tensor = TensorProto::new();
        tensor.set_dtype(DataType::DT_DOUBLE);
        tensor.set_tensor_shape(shape_proto(&[buckets.len() as i64, 3]));
        tensor.set_double_val(buckets.into_iter().flatten().collect());
        let mut value = Summary_Value::new();
        value.set_tag(tag.to_string());
        // HistogramPluginData version 0 is the empty message.
        value.set_metadata(plugin_data("histograms", Vec::new()));
        value.set_tensor(tensor);
        self.writer(stream)?.write_summary(summary_of(value), step)
    }

    /// `nodes` as the graph of `stream`'s run (a `GraphDef` event, as
    /// Keras's `write_graph` writes it), for TensorBoard's GRAPHS tab.
    pub fn graph(&mut self, stream: Stream, nodes: &[GraphNode]) -> Result<(), LogError> {
        let mut graph = GraphDef::new();
        graph.set_node(RepeatedField::from_vec(
            nodes.iter().map(node_def).collect(),
        ));
        let bytes = graph.write_to_bytes().map_err(|source| LogError::Encode {
            path: self.run_dir.clone(),
            source,
        })?;
        self.writer(stream)?.write_graph_def(bytes)
    }

    /// Write everything queued to disk before returning.
    pub fn flush(&mut self) -> Result<(), LogError> {
        for writer in [&mut self.train, &mut self.validation]
            .into_iter()
            .flatten()
        {
            writer.flush()?;
        }
        Ok(())
    }
}

fn node_def(node: &GraphNode) -> NodeDef {
    let mut def = NodeDef::new();
    def.set_name(node.name.clone());
    def.set_op(node.op.clone());
    def.set_input(RepeatedField::from_vec(node.inputs.clone()));
    let mut attrs: HashMap<String, AttrValue> = node
        .attrs
        .iter()
        .map(|(key, text)| {
            let mut value = AttrValue::new();
            value.set_s(text.as_bytes().to_vec());
            (key.clone(), value)
        })
        .collect();
    // TensorBoard labels an edge with its source's `_output_shapes`.
    let mut shapes = AttrValue_ListValue::new();
    shapes.set_shape(RepeatedField::from_vec(vec![shape_proto(
        &node.output_shape,
    )]));
    let mut value = AttrValue::new();
    value.set_list(shapes);
    attrs.insert("_output_shapes".into(), value);
    def.set_attr(attrs);
    def
}

fn shape_proto(dims: &[i64]) -> TensorShapeProto {
    let mut shape = TensorShapeProto::new();
    shape.set_dim(RepeatedField::from_vec(
        dims.iter()
            .map(|&size| {
                let mut dim = TensorShapeProto_Dim::new();
                dim.set_size(size);
                dim
            })
            .collect(),
    ));
    shape
}

/// Buckets per histogram: `tf.summary.histogram`'s default.
pub const HISTOGRAM_BUCKETS: usize = 30;

/// `count` buckets `[left, right, n]` over the finite `values`, by the rule of
/// TensorBoard's `histogram_pb`: equal widths from the least value to the
/// greatest, each bucket closed on the left and open on the right but the
/// last, closed on both. When every value is the same, every edge is that
/// value and the last bucket holds them all; with no finite value, all is 0.
/// NaN and infinities are left out (a weight is never one while training
/// goes on: `terminate_on_nan`).
pub fn histogram_buckets(values: &[f32], count: usize) -> Vec<[f64; 3]> {
    let finite = || {
        values
            .iter()
            .filter(|v| v.is_finite())
            .map(|&v| f64::from(v))
    };
    let (min, max, n) = finite().fold(
        (f64::INFINITY, f64::NEG_INFINITY, 0usize),
        |(lo, hi, n), v| (lo.min(v), hi.max(v), n + 1),
    );
    if n == 0 || count == 0 {
        return vec![[0.0; 3]; count];
    }
    if min == max {
        let mut buckets = vec![[min, min, 0.0]; count];
        buckets[count - 1][2] = n as f64;
        return buckets;
    }
    let width = (max - min) / count as f64;
    let mut counts = vec![0usize; count];
    for v in finite() {
        let i = ((v - min) / width).floor() as usize;
        counts[i.min(count - 1)] += 1;
    }
    // numpy's linspace: start + i * step, and the last edge exactly `max`.
    let edge = |i: usize| {
        if i == count {
            max
        } else {
            min + i as f64 * width
        }
    };
    counts
        .into_iter()
        .enumerate()
        .map(|(i, c)| [edge(i), edge(i + 1), c as f64])
        .collect()
}

pub(crate) fn summary_of(value: Summary_Value) -> Summary {
    let mut summary = Summary::new();
    summary.set_value(RepeatedField::from_vec(vec![value]));
    summary
}

/// Summary metadata naming a plugin, with `content` serialized as its data.
pub(crate) fn plugin_metadata(
    plugin: &str,
    content: &dyn Message,
    path: &Path,
) -> Result<SummaryMetadata, LogError> {
    let bytes = content
        .write_to_bytes()
        .map_err(|source| LogError::Encode {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(plugin_data(plugin, bytes))
}

/// Summary metadata naming a plugin, with its data already serialized.
fn plugin_data(plugin: &str, content: Vec<u8>) -> SummaryMetadata {
    let mut data = SummaryMetadata_PluginData::new();
    data.set_plugin_name(plugin.to_string());
    data.set_content(content);
    let mut metadata = SummaryMetadata::new();
    metadata.set_plugin_data(data);
    metadata
}

fn to_i32(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Check that `png` is a PNG of the given size; return TensorBoard's
/// colorspace code (1 grey, 2 grey+alpha, 3 RGB, 4 RGBA).
fn check_png(tag: &str, png: &[u8], width: u32, height: u32) -> Result<i32, LogError> {
    let decoder = PngDecoder::new(Cursor::new(png)).map_err(|e| LogError::InvalidPng {
        tag: tag.to_string(),
        reason: e.to_string(),
    })?;
    let (actual_width, actual_height) = decoder.dimensions();
    if (actual_width, actual_height) != (width, height) {
        return Err(LogError::PngSize {
            tag: tag.to_string(),
            width,
            height,
            actual_width,
            actual_height,
        });
    }
    Ok(match decoder.color_type() {
        ColorType::L8 | ColorType::L16 => 1,
        ColorType::La8 | ColorType::La16 => 2,
        ColorType::Rgba8 | ColorType::Rgba16 | ColorType::Rgba32F => 4,
        _ => 3,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::event_file::tests::read_events;

    fn event_files(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        files
    }

    fn png(width: u32, height: u32, color: image::ExtendedColorType) -> Vec<u8> {
        let channels = color.channel_count() as usize;
        let pixels = vec![128u8; width as usize * height as usize * channels];
        let mut out = Vec::new();
        image::ImageEncoder::write_image(
            image::codecs::png::PngEncoder::new(&mut out),
            &pixels,
            width,
            height,
            color,
        )
        .unwrap();
        out
    }

    #[test]
    fn streams_go_to_keras_subfolders_created_on_first_use() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = TensorboardLog::open(dir.path()).unwrap();
        log.scalar(Stream::Train, EPOCH_LOSS, 0, 0.5).unwrap();
        log.flush().unwrap();
        assert!(dir.path().join("train").is_dir());
        assert!(!dir.path().join("validation").exists());
        log.scalar(Stream::Validation, EPOCH_LOSS, 0, 0.7).unwrap();
        log.flush().unwrap();
        let files = event_files(&dir.path().join("validation"));
        assert_eq!(files.len(), 1);
        let events = read_events(&files[0]);
        let value = &events[1].get_summary().get_value()[0];
        assert_eq!(
            (value.get_tag(), value.get_simple_value()),
            (EPOCH_LOSS, 0.7f32)
        );
    }

    #[test]
    fn reopening_adds_a_file_and_keeps_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut log = TensorboardLog::open(dir.path()).unwrap();
            log.scalar(Stream::Train, EPOCH_LOSS, 0, 1.0).unwrap();
            log.flush().unwrap();
        }
        let mut log = TensorboardLog::open(dir.path()).unwrap();
        log.scalar(Stream::Train, EPOCH_LOSS, 1, 0.5).unwrap();
        log.flush().unwrap();
        let files = event_files(&dir.path().join("train"));
        assert_eq!(files.len(), 2);
        let steps: Vec<i64> = files.iter().map(|f| read_events(f)[1].get_step()).collect();
        assert_eq!(steps, [0, 1]);
    }

    #[test]
    fn images_carry_size_and_colorspace() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = TensorboardLog::open(dir.path()).unwrap();
        let rgba = png(5, 3, image::ExtendedColorType::Rgba8);
        log.image_png(Stream::Validation, "m", 2, &rgba, 5, 3)
            .unwrap();
        log.flush().unwrap();
        let files = event_files(&dir.path().join("validation"));
        let events = read_events(&files[0]);
        let image = events[1].get_summary().get_value()[0].get_image();
        assert_eq!(
            (
                image.get_width(),
                image.get_height(),
                image.get_colorspace()
            ),
            (5, 3, 4)
        );
        assert_eq!(image.get_encoded_image_string(), &rgba[..]);
    }

    #[test]
    fn histogram_buckets_follow_tensorboards_rule() {
        // 0..=4 in two buckets of width 2: [0, 2) holds 0 and 1, [2, 4] the rest.
        let values = [4.0, 0.0, 1.0, 2.0, 3.0];
        assert_eq!(
            histogram_buckets(&values, 2),
            [[0.0, 2.0, 2.0], [2.0, 4.0, 3.0]]
        );
        // Three buckets of width 4/3: 0 and 1 fall in the first, 2 in the
        // second (2 / (4/3) = 1.5), 3 and 4 in the last (4 is clamped to it).
        let third = 4.0 / 3.0;
        assert_eq!(
            histogram_buckets(&values, 3),
            [
                [0.0, third, 2.0],
                [third, 2.0 * third, 1.0],
                [2.0 * third, 4.0, 2.0]
            ]
        );
        // One value throughout: every edge is it, the last bucket holds all.
        assert_eq!(
            histogram_buckets(&[0.5; 7], 3),
            [[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [0.5, 0.5, 7.0]]
        );
        // NaN and infinities are left out; nothing finite is all zeros.
        assert_eq!(
            histogram_buckets(&[f32::NAN, -1.0, f32::INFINITY, 1.0], 2),
            [[-1.0, 0.0, 1.0], [0.0, 1.0, 1.0]]
        );
        assert_eq!(histogram_buckets(&[f32::NAN], 2), [[0.0; 3]; 2]);
        assert_eq!(histogram_buckets(&[], 2), [[0.0; 3]; 2]);
        assert!(histogram_buckets(&[1.0, 2.0], 0).is_empty());
    }

    #[test]
    fn a_histogram_is_a_k_by_3_tensor_for_the_histograms_plugin() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = TensorboardLog::open(dir.path()).unwrap();
        let values: Vec<f32> = (0..100).map(|i| (i as f32 * 0.37).sin()).collect();
        log.histogram(Stream::Train, "dense/kernel/histogram", 4, &values)
            .unwrap();
        log.flush().unwrap();
        let events = read_events(&event_files(&dir.path().join("train"))[0]);
        assert_eq!(events[1].get_step(), 4);
        let value = &events[1].get_summary().get_value()[0];
        assert_eq!(value.get_tag(), "dense/kernel/histogram");
        assert_eq!(
            value.get_metadata().get_plugin_data().get_plugin_name(),
            "histograms"
        );
        let tensor = value.get_tensor();
        assert_eq!(tensor.get_dtype(), DataType::DT_DOUBLE);
        let dims: Vec<i64> = tensor
            .get_tensor_shape()
            .get_dim()
            .iter()
            .map(|d| d.get_size())
            .collect();
        assert_eq!(dims, [HISTOGRAM_BUCKETS as i64, 3]);
        let flat: Vec<f64> = histogram_buckets(&values, HISTOGRAM_BUCKETS)
            .into_iter()
            .flatten()
            .collect();
        assert_eq!(tensor.get_double_val(), &flat[..]);
        let counted: f64 = flat.chunks(3).map(|b| b[2]).sum();
        assert_eq!(counted, 100.0);
    }

    #[test]
    fn a_graph_is_the_files_graph_event_with_shapes_on_its_nodes() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = TensorboardLog::open(dir.path()).unwrap();
        let node = |name: &str, op: &str, inputs: &[&str], shape: &[i64]| GraphNode {
            name: name.into(),
            op: op.into(),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            output_shape: shape.to_vec(),
            attrs: vec![("units".into(), "4".into())],
        };
        let nodes = [
            node("input", "InputLayer", &[], &[-1, 3]),
            node("dense", "Dense", &["input"], &[-1, 4]),
        ];
        log.graph(Stream::Train, &nodes).unwrap();
        log.flush().unwrap();
        let events = read_events(&event_files(&dir.path().join("train"))[0]);
        let graph = GraphDef::parse_from_bytes(events[1].get_graph_def()).unwrap();
        let read: Vec<GraphNode> = graph
            .get_node()
            .iter()
            .map(|n| {
                let attr = n.get_attr();
                let shapes = attr["_output_shapes"].get_list().get_shape();
                assert_eq!(shapes.len(), 1);
                GraphNode {
                    name: n.get_name().into(),
                    op: n.get_op().into(),
                    inputs: n.get_input().to_vec(),
                    output_shape: shapes[0].get_dim().iter().map(|d| d.get_size()).collect(),
                    attrs: vec![(
                        "units".into(),
                        String::from_utf8(attr["units"].get_s().to_vec()).unwrap(),
                    )],
                }
            })
            .collect();
        assert_eq!(read, nodes);
        assert_eq!(graph.get_node()[1].get_attr().len(), 2);
    }

    #[test]
    fn wrong_sizes_and_non_pngs_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = TensorboardLog::open(dir.path()).unwrap();
        let grey = png(4, 2, image::ExtendedColorType::L8);
        let err = log
            .image_png(Stream::Train, "g", 0, &grey, 2, 4)
            .unwrap_err();
        assert!(
            matches!(
                err,
                LogError::PngSize {
                    actual_width: 4,
                    actual_height: 2,
                    ..
                }
            ),
            "{err}"
        );
        let err = log
            .image_png(Stream::Train, "g", 0, b"GIF89a", 1, 1)
            .unwrap_err();
        assert!(
            matches!(err, LogError::InvalidPng { ref tag, .. } if tag == "g"),
            "{err}"
        );
    }

    #[test]
    fn text_is_a_string_tensor_for_the_text_plugin() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = TensorboardLog::open(dir.path()).unwrap();
        log.text(Stream::Train, "config", 0, "# hi\n`x = 1`")
            .unwrap();
        log.flush().unwrap();
        let files = event_files(&dir.path().join("train"));
        let events = read_events(&files[0]);
        let value = &events[1].get_summary().get_value()[0];
        assert_eq!(
            value.get_metadata().get_plugin_data().get_plugin_name(),
            "text"
        );
        assert_eq!(value.get_tensor().get_dtype(), DataType::DT_STRING);
        assert_eq!(
            value.get_tensor().get_string_val(),
            [b"# hi\n`x = 1`".to_vec()]
        );
    }
}
