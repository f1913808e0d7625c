//! `earshot devices`: the sound cards this machine can record from and play to.

use earshot_node::audio::device::{self, DeviceError, DeviceInfo, DeviceList};
use serde_json::json;

use super::Context;
use crate::Exit;
use crate::output::{print_json, say};

/// What to say when there is nothing to list.
const NO_DEVICES: &str = "no sound card found; use --input FILE.wav|sine|silence and \
                          --output FILE.wav|null";

pub fn devices(ctx: &Context) -> anyhow::Result<Exit> {
    // A machine without sound is not an error: the lists are empty and the note says why.
    let (list, empty) = match device::list() {
        Ok(list) if list.inputs.is_empty() && list.outputs.is_empty() => {
            (list, Some(NO_DEVICES.to_owned()))
        }
        Ok(list) => (list, None),
        Err(DeviceError::List { host, source }) => (
            DeviceList {
                host: host.clone(),
                fallback: None,
                inputs: Vec::new(),
                outputs: Vec::new(),
            },
            Some(format!(
                "{NO_DEVICES} ({host} could not list its devices: {source})"
            )),
        ),
        Err(err) => return Err(err.into()),
    };
    // A PulseAudio server that was found but refused us is worth a word even when ALSA has
    // devices: the user likely expected the desktop's sound server.
    let fallback = list.fallback.as_ref().map(ToString::to_string);
    if ctx.json {
        let note = match (&empty, &fallback) {
            (Some(empty), Some(fallback)) => Some(format!("{empty}; {fallback}")),
            (note, fallback) => note.clone().or_else(|| fallback.clone()),
        };
        print_json(&json!({
            "host": list.host,
            "inputs": list.inputs,
            "outputs": list.outputs,
            "note": note,
            "fallback": fallback,
        }));
        return Ok(Exit(0));
    }
    say!("Audio system: {}", list.host);
    if let Some(fallback) = &fallback {
        say!("Note: {fallback}.");
    }
    if let Some(empty) = &empty {
        say!("Nothing to list: {empty}.");
        return Ok(Exit(0));
    }
    for (title, devices) in [("Inputs", &list.inputs), ("Outputs", &list.outputs)] {
        say!();
        say!("{title} (pass the name to choose one; * is the default):");
        if devices.is_empty() {
            say!("  none");
        }
        let width = devices.iter().map(|d| d.name.len()).max().unwrap_or(0);
        for device in devices {
            say!(
                "{} {:width$}  {}{}",
                if device.is_default { " *" } else { "  " },
                device.name,
                device.description,
                format_text(device),
            );
        }
    }
    Ok(Exit(0))
}

/// " (48000 Hz, 2 channels)", or what is known of it.
fn format_text(device: &DeviceInfo) -> String {
    match (device.sample_rate, device.channels) {
        (Some(rate), Some(1)) => format!(" ({rate} Hz, mono)"),
        (Some(rate), Some(channels)) => format!(" ({rate} Hz, {channels} channels)"),
        (Some(rate), None) => format!(" ({rate} Hz)"),
        _ => " (busy)".into(),
    }
}
