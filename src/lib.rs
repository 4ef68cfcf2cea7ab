//! `runner`: a declarative experiment runner for deep learning on burn.
//!
//! Data flows one way: file -> `*Spec` ([`config`]) -> `*Plan` ([`plan`],
//! shapes from [`shape`]) -> model, data and trainer -> run folder.

pub mod backend;
pub mod cli;
pub mod commands;
pub mod config;
pub mod device;
pub mod error;
pub mod model;
pub mod plan;
pub mod shape;
