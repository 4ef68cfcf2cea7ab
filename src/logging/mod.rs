//! Run logs: `metrics.csv` and TensorBoard event files.

pub mod csv;
