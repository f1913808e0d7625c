//! The part of the `earshot` command that is a library: what is parsed here can be reached
//! from outside the binary (the fuzz targets in `fuzz/`), and the binary uses it from here.
//!
//! # Layout
//!
//! - [`relay_config`]: the community relay's TOML config (`earshot relay --config`), read and
//!   checked into typed values, and printed back with a comment for every setting.
//!
//! Everything else of the command (arguments, commands, output) is the binary's own
//! (`main.rs`, `cmd/`).

pub mod relay_config;
