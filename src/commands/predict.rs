//! `runner predict RUN IMAGES...`: a trained run's model on image files:
//! a table, predictions.csv and optionally a picture grid. The work is
//! [`crate::predict`].

use crate::data::DataError;
use crate::error::{Error, Result};
use crate::predict::{self, PredictError};
use crate::train::checkpoint::CheckpointError;

pub use crate::predict::PredictRequest;

pub fn predict(req: &PredictRequest) -> Result<()> {
    let outcome = predict::predict(req).map_err(to_error)?;
    crate::out!("{}", outcome.render());
    Ok(())
}

/// Exit code 2 for what the command, the run folder or the images got
/// wrong (an unreadable image under `on_bad_image = "fail"` included,
/// whose help names `--skip-bad-images`), and an output path that cannot be
/// written; 1 when the weights cannot be decoded, the model fails or the
/// disk fails the write.
fn to_error(e: PredictError) -> Error {
    match e {
        PredictError::Config(c) => Error::Config(c),
        PredictError::Plan(p) => p.into(),
        PredictError::RunDir(r) | PredictError::Checkpoint(CheckpointError::Io(r)) => r.into(),
        PredictError::Device(d) => Error::Device(d),
        PredictError::Backend(b) => Error::Backend(b),
        PredictError::Data(d @ (DataError::BadImage { .. } | DataError::BadImages { .. })) => {
            Error::DataHint {
                message: d.to_string(),
                help: "remove or replace the file, or pass --skip-bad-images to leave \
                       unreadable files out (they are listed)"
                    .to_string(),
            }
        }
        PredictError::Data(d) => Error::Data(d),
        PredictError::Plot(p) => Error::Report(p.into()),
        e @ (PredictError::Checkpoint(
            CheckpointError::Decode { .. } | CheckpointError::Encode { .. },
        )
        | PredictError::Readback(_)) => Error::RunFailed(e.to_string()),
        other => Error::Usage(other.to_string()),
    }
}
