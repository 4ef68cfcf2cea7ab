//! The integration test binary: one module per area.

mod python;
mod tensorboard;
