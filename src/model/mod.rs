//! The burn model built from a [`ModelPlan`](crate::plan::ModelPlan).
//!
//! `layer` holds one `#[derive(Module)]` enum per layer type, `net` the
//! forward pass over the stack, `summary` the Keras-style table whose counts
//! come from the built module.

pub mod layer;
pub mod net;
#[cfg(test)]
mod pool_layers_tests;
pub mod summary;

pub use crate::ops::ConvOps;
pub use net::Net;
