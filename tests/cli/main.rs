//! The integration tests: one binary, one module per area.

mod slurm;
mod slurm_cluster;
