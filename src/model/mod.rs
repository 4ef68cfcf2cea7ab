//! The burn model built from a [`ModelPlan`](crate::plan::ModelPlan).
//!
//! `layer` holds one `#[derive(Module)]` enum per layer type, `net` the
//! forward pass over the stack, `summary` the Keras-style table whose counts
//! come from the built module.

pub mod avg_pool;
pub mod conv;
pub mod conv_cpu;
pub mod conv_direct_cpu;
pub mod conv_lanes_cpu;
pub mod conv_pool;
pub mod conv_pool_cpu;
pub mod conv_winograd5_cpu;
pub mod conv_winograd_cpu;
#[cfg(feature = "gpu")]
pub mod cube;
pub mod layer;
pub mod net;
pub mod norm;
pub mod pool;
pub mod pool_cpu;
pub mod pool_grad_cpu;
#[cfg(test)]
mod pool_layers_tests;
pub mod summary;

pub use conv::ConvOps;
pub use net::Net;
