//! Trial sweeps.

pub mod slurm;
