//! A [`Sequential`] as files: its state dict as safetensors (the
//! `safetensors` crate encodes it, metadata in the header), and a Python
//! module beside it that builds the `nn.Sequential` and loads the weights.

use std::borrow::Cow;
use std::collections::HashMap;

use ::safetensors::tensor::{Dtype, View};

use super::torch::{Entry, Sequential, Values};

/// An entry as the crate writes it: little-endian bytes.
struct Bytes {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl View for &Bytes {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

fn bytes(e: &Entry) -> Bytes {
    let (dtype, data) = match &e.values {
        Values::F32(v) => (Dtype::F32, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        Values::I64(v) => (Dtype::I64, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
    };
    Bytes {
        dtype,
        shape: e.shape.clone(),
        data,
    }
}

/// The safetensors file of `seq`'s state dict, with `metadata` (and
/// `format = "pt"`, which Hugging Face's loaders look for) in its header.
pub fn encode(seq: &Sequential, metadata: &[(String, String)]) -> Result<Vec<u8>, String> {
    let tensors: Vec<(String, Bytes)> = seq.state_dict().map(|(n, e)| (n, bytes(e))).collect();
    let mut info: HashMap<String, String> = metadata.iter().cloned().collect();
    info.insert("format".into(), "pt".into());
    ::safetensors::tensor::serialize(tensors.iter().map(|(n, b)| (n.as_str(), b)), Some(info))
        .map_err(|e| e.to_string())
}

/// What the Python module says about the model it builds.
pub struct About<'a> {
    /// The safetensors file's name, looked up beside the module.
    pub weights_file: &'a str,
    /// The module's own name, for the usage example.
    pub module: &'a str,
    pub experiment: &'a str,
    pub run: &'a str,
    pub checkpoint: &'a str,
    pub input: &'a str,
    pub classes: &'a [String],
    /// The preprocessing, as JSON.
    pub preprocessing: &'a str,
}

/// A JSON value as a Python string literal (JSON's string escapes are
/// Python's too).
fn py_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// The Python module: `build()` returns the `nn.Sequential`, `load()` the
/// same with the exported weights, in eval mode.
pub fn python_module(seq: &Sequential, about: &About) -> String {
    let classes = serde_json::to_string(about.classes).unwrap_or_default();
    format!(
        r#""""PyTorch form of runner experiment {experiment} (run {run}, checkpoint `{checkpoint}`).

Written by `runner export --format safetensors`. {weights} beside this file
holds the state dict of the nn.Sequential that `build()` returns.

    import {module}
    net = {module}.load()                     # nn.Sequential, in eval mode
    x = {module}.preprocess("a.png", "b.jpg")  # float32 [2, channels, height, width]
    probabilities = net(x).softmax(1)          # in the order of CLASSES

Input: {input}, preprocessed as PREPROCESSING says (preprocess() does it).
Output: logits, one per class; a softmax gives the class probabilities.
"""

import json
from pathlib import Path

import torch
from torch import nn

CLASSES = {classes}
PREPROCESSING = json.loads({preprocessing})
WEIGHTS = Path(__file__).with_name({weights_literal})


def build() -> nn.Sequential:
    """The layer stack as trained, in inference form, with fresh weights."""
    return {sequential}


def load(path=WEIGHTS) -> nn.Sequential:
    """build() with the exported weights, in eval mode."""
    from safetensors.torch import load_file

    model = build()
    model.load_state_dict(load_file(str(path)))
    return model.eval()


def preprocess(*images) -> torch.Tensor:
    """Image files (paths) or PIL images as the model's input: float32
    [len(images), channels, height, width].

    As runner reads an image (and Keras's load_img): PIL's convert to the
    model's colour, a resize to its size with the run's interpolation, then
    PREPROCESSING's rescale and normalize. That is runner's input exactly
    for an image already at the model's size, and for a `nearest` resize
    (PIL's rule, which runner follows) of any image but a JPEG larger than
    the model's size, which runner may decode at a reduced DCT scale.
    There, and with PIL's other filters, a pixel can be a step or two apart.
    """
    import numpy as np
    from PIL import Image

    height, width = PREPROCESSING["resize"]
    mode = "L" if PREPROCESSING["color"] == "grayscale" else "RGB"
    resample = getattr(Image.Resampling, PREPROCESSING["interpolation"].upper())
    normalize = PREPROCESSING["normalize"]
    batch = []
    for image in images:
        if not isinstance(image, Image.Image):
            image = Image.open(image)
        image = image.convert(mode)
        if image.size != (width, height):
            image = image.resize((width, height), resample)
        x = np.asarray(image, dtype=np.float32).reshape(height, width, -1)
        x = x * np.float32(PREPROCESSING["rescale"])
        if normalize:
            x = (x - np.asarray(normalize["mean"], np.float32)) / np.asarray(
                normalize["std"], np.float32
            )
        batch.append(x.transpose(2, 0, 1))
    return torch.from_numpy(np.stack(batch))
"#,
        experiment = py_str(about.experiment),
        run = about.run,
        checkpoint = about.checkpoint,
        weights = about.weights_file,
        module = about.module,
        input = about.input,
        preprocessing = py_str(about.preprocessing),
        weights_literal = py_str(about.weights_file),
        sequential = seq.python(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::torch::TorchModule;

    fn seq() -> Sequential {
        Sequential {
            modules: vec![
                TorchModule {
                    code: "nn.Linear(2, 3, bias=True)".into(),
                    comment: "dense".into(),
                    entries: vec![
                        Entry {
                            name: "weight",
                            shape: vec![3, 2],
                            values: Values::F32(vec![1.0, 2.0, 3.0, 4.0, 5.0, -6.5]),
                        },
                        Entry {
                            name: "bias",
                            shape: vec![3],
                            values: Values::F32(vec![0.5, 0.0, -1.0]),
                        },
                    ],
                },
                TorchModule {
                    code: "nn.ReLU()".into(),
                    comment: "dense's activation".into(),
                    entries: vec![],
                },
                TorchModule {
                    code: "nn.BatchNorm1d(3)".into(),
                    comment: "batch_norm".into(),
                    entries: vec![Entry {
                        name: "num_batches_tracked",
                        shape: vec![],
                        values: Values::I64(vec![7]),
                    }],
                },
            ],
        }
    }

    /// The crate's own reader gets the names, shapes, values and metadata back.
    #[test]
    fn the_file_reads_back_with_the_sequentials_names() {
        let bytes = encode(&seq(), &[("classes".into(), "[\"a\"]".into())]).expect("encodes");
        let (_, header) = ::safetensors::SafeTensors::read_metadata(&bytes).expect("header");
        let meta = header.metadata().clone().expect("metadata");
        assert_eq!(meta.get("classes").map(String::as_str), Some("[\"a\"]"));
        assert_eq!(meta.get("format").map(String::as_str), Some("pt"));
        let file = ::safetensors::SafeTensors::deserialize(&bytes).expect("reads");
        let mut names = file.names();
        names.sort();
        assert_eq!(names, ["0.bias", "0.weight", "2.num_batches_tracked"]);
        let w = file.tensor("0.weight").expect("weight");
        assert_eq!((w.dtype(), w.shape()), (Dtype::F32, &[3usize, 2][..]));
        let back: Vec<f32> = w
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        assert_eq!(back, [1.0, 2.0, 3.0, 4.0, 5.0, -6.5]);
        let n = file.tensor("2.num_batches_tracked").expect("count");
        assert_eq!((n.dtype(), n.shape()), (Dtype::I64, &[][..]));
        assert_eq!(n.data(), 7i64.to_le_bytes());
    }

    #[test]
    fn the_python_module_lists_every_module_with_its_index() {
        let classes = ["a \"b\"".to_string(), "c".to_string()];
        let text = python_module(
            &seq(),
            &About {
                weights_file: "model.safetensors",
                module: "model",
                experiment: "t",
                run: "runs/t/v0001",
                checkpoint: "final",
                input: "float32 [batch, 3, 8, 8]",
                classes: &classes,
                preprocessing: r#"{"rescale":0.5,"normalize":null}"#,
            },
        );
        assert!(
            text.contains("        nn.Linear(2, 3, bias=True),  # 0: dense\n"),
            "{text}"
        );
        assert!(
            text.contains("        nn.ReLU(),  # 1: dense's activation\n"),
            "{text}"
        );
        assert!(
            text.contains("        nn.BatchNorm1d(3),  # 2: batch_norm\n"),
            "{text}"
        );
        assert!(text.contains(r#"CLASSES = ["a \"b\"","c"]"#), "{text}");
        assert!(
            text.contains(r#"PREPROCESSING = json.loads("{\"rescale\":0.5,\"normalize\":null}")"#),
            "{text}"
        );
        assert!(text.contains(r#"WEIGHTS = Path(__file__).with_name("model.safetensors")"#));
    }
}
