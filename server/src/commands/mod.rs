//! The `facegate` subcommands other than `serve`, one module per concern.

pub mod engine;
pub mod gallery_bench;
pub mod migrate;
pub mod people;
