//! `runner`: a declarative experiment runner for deep learning on burn.
//!
//! Data flows one way: file -> `*Spec` ([`config`]) -> `*Plan` ([`plan`],
//! shapes from [`plan::Shape`]) -> model, data and trainer -> run folder.

// Config errors carry the source text and span they point at, so they are
// large; they are built once, on the way out, never in a hot loop.
#![allow(clippy::result_large_err)]

pub mod backend;
pub mod cli;
pub mod commands;
pub mod compare;
pub mod config;
pub mod data;
pub mod device;
pub mod draw;
pub mod error;
pub mod export;
pub mod gpu;
pub mod logging;
pub mod model;
pub mod ops;
pub mod out;
pub mod plan;
pub mod predict;
pub mod process;
pub mod report;
pub mod run;
pub mod rundir;
pub mod signals;
pub mod sweep;
pub mod train;
pub mod vocab;

#[cfg(test)]
mod layout_tests;
