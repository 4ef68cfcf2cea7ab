//! The integration tests: one binary driving the real `runner`, one module per area.

mod bench;
mod common;
mod config;
mod data;
mod export;
mod finetune;
mod gpu;
mod hostile;
mod loss;
mod predict;
mod python;
mod run;
mod slurm;
mod slurm_cluster;
mod slurm_fake;
mod sweep;
mod sweep_search;
mod tensorboard;
