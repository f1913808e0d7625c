//! Earshot's integration tests: one binary, one module per area.
//!
//! These run the built `earshot` binary (and, as the live-room issues land, several nodes) on
//! 127.0.0.1 only. Nothing here sleeps to synchronise: tests wait for output or events with a
//! timeout.

mod audio;
mod control;
mod devices;
mod harness;
mod invites;
mod lab;
mod live;
mod net;
mod private;
mod quality;
mod recordings;
mod relay;
mod replays;
mod rooms;
mod schedule;
/// The talkers and PESQ scoring the `audio_quality` bench shares with `lab::lossy_sound`.
#[path = "../node/benches/speech/mod.rs"]
mod speech;
mod studio;
mod support;
mod trust;
mod view;
