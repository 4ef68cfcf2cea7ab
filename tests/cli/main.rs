//! The integration tests: one binary driving the real `runner`, one module per area.

mod common;
mod config;
mod data;
mod python;
mod slurm;
mod slurm_cluster;
mod tensorboard;
