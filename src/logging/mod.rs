//! Run logs for humans and tools: `metrics.csv` ([`csv`]), TensorBoard event
//! files ([`tensorboard`]), TensorBoard's hyperparameter summaries ([`hparams`]).
//!
//! These modules take plain numbers, PNG bytes and strings; they know nothing
//! of training.

pub mod csv;
mod event_file;
pub mod hparams;
pub mod tensorboard;

pub(crate) use event_file::now_secs;

use std::io;
use std::path::PathBuf;

use thiserror::Error;

/// Everything that can go wrong while writing logs; each variant names the file
/// or the summary it concerns.
#[derive(Debug, Error)]
pub enum LogError {
    #[error("cannot create the log folder {path}: {source}")]
    CreateDir { path: PathBuf, source: io::Error },

    #[error("cannot create the event file {path}: {source}")]
    CreateFile { path: PathBuf, source: io::Error },

    #[error("cannot write the event file {path}: {source}")]
    Write { path: PathBuf, source: io::Error },

    #[error("cannot encode a TensorBoard event for {path}: {source}")]
    Encode {
        path: PathBuf,
        source: protobuf::ProtobufError,
    },

    #[error("image summary `{tag}`: the bytes are not a readable PNG ({reason})")]
    InvalidPng { tag: String, reason: String },

    #[error("image summary `{tag}`: the PNG is {actual_width}x{actual_height}, but {width}x{height} was given")]
    PngSize {
        tag: String,
        width: u32,
        height: u32,
        actual_width: u32,
        actual_height: u32,
    },

    #[error("hyperparameter `{name}`: {reason}")]
    InvalidHparam { name: String, reason: String },

    /// A file written whole, atomically.
    #[error(transparent)]
    File(#[from] crate::rundir::RunDirError),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Callers show a `LogError` by its message alone (a warning line, a
    /// run's failure): the message carries the OS's reason.
    #[test]
    fn a_log_error_says_why() {
        let e = LogError::CreateDir {
            path: PathBuf::from("/runs/x/train"),
            source: io::Error::from_raw_os_error(13),
        };
        let msg = e.to_string();
        assert!(
            msg.starts_with("cannot create the log folder /runs/x/train: ")
                && msg.contains("os error 13"),
            "{msg}"
        );
    }
}
