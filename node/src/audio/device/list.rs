//! Which devices there are: listing them for `earshot devices`, finding the one a user named,
//! and choosing the configuration a stream opens with.

use cpal::traits::{DeviceTrait, HostTrait};
use cpal::{
    BufferSize, ErrorKind, SampleFormat, StreamConfig, SupportedBufferSize, SupportedStreamConfig,
};

use super::host;
use super::{DeviceError, DeviceFormat, DeviceInfo, DeviceList, Direction, PERIOD};
use crate::audio::SAMPLE_RATE;

pub(super) fn list_here() -> Result<DeviceList, DeviceError> {
    let (host, fallback) = host::choose();
    let host_name = host.id().name().to_owned();
    let mut list = DeviceList {
        host: host_name.clone(),
        fallback,
        inputs: Vec::new(),
        outputs: Vec::new(),
    };
    let default_ids = [
        host.default_input_device().and_then(|d| d.id().ok()),
        host.default_output_device().and_then(|d| d.id().ok()),
    ];
    let mut devices: Vec<cpal::Device> = host
        .devices()
        .map_err(|source| DeviceError::List {
            host: host_name.clone(),
            source,
        })?
        .collect();
    // ALSA's hints do not always include its `default` device.
    for default in [host.default_input_device(), host.default_output_device()]
        .into_iter()
        .flatten()
    {
        let id = default.id().ok();
        if id.is_some() && !devices.iter().any(|d| d.id().ok() == id) {
            devices.insert(0, default);
        }
    }
    for device in devices {
        let Ok(id) = device.id() else { continue };
        if is_unlisted(&id) {
            continue;
        }
        let description = describe(&device);
        for (direction, default_id) in [Direction::Input, Direction::Output]
            .into_iter()
            .zip(&default_ids)
        {
            let supported = match direction {
                Direction::Input => device.supports_input(),
                Direction::Output => device.supports_output(),
            };
            if !supported {
                continue;
            }
            let config = match direction {
                Direction::Input => device.default_input_config(),
                Direction::Output => device.default_output_config(),
            };
            let (sample_rate, channels) = match config {
                Ok(config) => (Some(config.sample_rate()), Some(config.channels())),
                // In use by another program: real, just not available right now.
                Err(err) if err.kind() == ErrorKind::DeviceBusy => (None, None),
                Err(err) => {
                    tracing::debug!(device = %id, %direction, %err, "not a usable device");
                    continue;
                }
            };
            let info = DeviceInfo {
                name: id.id().to_owned(),
                description: description.clone(),
                is_default: default_id.as_ref() == Some(&id),
                sample_rate,
                channels,
            };
            let target = match direction {
                Direction::Input => &mut list.inputs,
                Direction::Output => &mut list.outputs,
            };
            if !target.iter().any(|known| known.name == info.name) {
                target.push(info);
            }
        }
    }
    // Defaults first; otherwise the host's order.
    list.inputs.sort_by_key(|d| !d.is_default);
    list.outputs.sort_by_key(|d| !d.is_default);
    Ok(list)
}

/// ALSA devices [`list`] leaves out (they still open when named): `null` opens and swallows
/// everything at any speed, so it is no sound card; `jack` is the plugin into a JACK server, and
/// probing it without one makes libjack print ten lines to standard error, past ALSA's handler.
fn is_unlisted(id: &cpal::DeviceId) -> bool {
    id.host().name() == "ALSA" && matches!(id.id(), "null" | "jack")
}

fn describe(device: &cpal::Device) -> String {
    device
        .description()
        .map(|d| d.name().to_owned())
        .unwrap_or_default()
}

/// Finds the device and chooses its configuration. A default device that is there but cannot
/// be opened (ALSA's `default` on a machine without a card) is no sound card.
pub(super) fn open_device(
    direction: Direction,
    name: Option<&str>,
) -> Result<(cpal::Device, DeviceFormat, StreamConfig, SampleFormat), DeviceError> {
    let (host, fallback) = host::choose();
    if let Some(fallback) = &fallback {
        host::warn_once(fallback);
    }
    let device = find_device(&host, direction, name)?;
    match choose_config(&device, direction) {
        Ok((format, config, sample_format)) => Ok((device, format, config, sample_format)),
        Err(DeviceError::Open { source, .. })
            if name.is_none() && source.kind() == ErrorKind::DeviceNotAvailable =>
        {
            Err(DeviceError::NoDevice {
                direction,
                host: host.id().name().to_owned(),
                alternative: direction.alternative(),
            })
        }
        Err(err) => Err(err),
    }
}

/// The default device, or the one `name` picks: an exact identifier, else an exact description,
/// else the one device whose identifier or description contains it (ignoring case).
fn find_device(
    host: &cpal::Host,
    direction: Direction,
    name: Option<&str>,
) -> Result<cpal::Device, DeviceError> {
    let host_name = host.id().name().to_owned();
    let Some(name) = name else {
        let default = match direction {
            Direction::Input => host.default_input_device(),
            Direction::Output => host.default_output_device(),
        };
        return default.ok_or(DeviceError::NoDevice {
            direction,
            host: host_name,
            alternative: direction.alternative(),
        });
    };
    let mut devices: Vec<cpal::Device> = host
        .devices()
        .map_err(|source| DeviceError::List {
            host: host_name.clone(),
            source,
        })?
        .filter(|device| match direction {
            Direction::Input => device.supports_input(),
            Direction::Output => device.supports_output(),
        })
        .collect();
    let default = match direction {
        Direction::Input => host.default_input_device(),
        Direction::Output => host.default_output_device(),
    };
    if let Some(default) = default
        && !devices.contains(&default)
    {
        devices.push(default);
    }
    let named: Vec<(String, String)> = devices
        .iter()
        .map(|d| {
            (
                d.id().map(|id| id.id().to_owned()).unwrap_or_default(),
                describe(d),
            )
        })
        .collect();
    let wanted = name.to_lowercase();
    let pick = named
        .iter()
        .position(|(id, _)| id == name)
        .or_else(|| {
            named
                .iter()
                .position(|(_, description)| description.to_lowercase() == wanted)
        })
        .or_else(|| {
            let mut matching = named.iter().enumerate().filter(|(_, (id, description))| {
                id.to_lowercase().contains(&wanted) || description.to_lowercase().contains(&wanted)
            });
            match (matching.next(), matching.next()) {
                (Some((index, _)), None) => Some(index),
                _ => None,
            }
        });
    match pick {
        Some(index) => Ok(devices.swap_remove(index)),
        // PulseAudio and others have no device of that name, but people say it.
        None if wanted == "default" => find_device(host, direction, None),
        None => {
            let available = devices
                .iter()
                .zip(&named)
                .filter(|(device, _)| {
                    device.id().is_ok_and(|id| !is_unlisted(&id))
                        && match direction {
                            Direction::Input => device.default_input_config().is_ok(),
                            Direction::Output => device.default_output_config().is_ok(),
                        }
                })
                .map(|(_, (id, _))| id.clone())
                .collect();
            Err(DeviceError::NotFound {
                direction,
                name: name.to_owned(),
                host: host_name,
                available,
            })
        }
    }
}

/// The device's default configuration, moved to 48 kHz when the device offers that in the same
/// channel count and format (then nothing needs resampling), with a 10 ms period when the device
/// accepts one.
fn choose_config(
    device: &cpal::Device,
    direction: Direction,
) -> Result<(DeviceFormat, StreamConfig, SampleFormat), DeviceError> {
    let device_name = device
        .id()
        .map(|id| id.id().to_owned())
        .unwrap_or_else(|_| describe(device));
    let open_err = |source| DeviceError::Open {
        direction,
        device: device_name.clone(),
        source,
    };
    let (default, ranges): (SupportedStreamConfig, Vec<cpal::SupportedStreamConfigRange>) =
        match direction {
            Direction::Input => (
                device.default_input_config().map_err(open_err)?,
                device
                    .supported_input_configs()
                    .map(Iterator::collect)
                    .unwrap_or_default(),
            ),
            Direction::Output => (
                device.default_output_config().map_err(open_err)?,
                device
                    .supported_output_configs()
                    .map(Iterator::collect)
                    .unwrap_or_default(),
            ),
        };
    let chosen = ranges
        .into_iter()
        .filter(|range| {
            range.channels() == default.channels()
                && range.sample_format() == default.sample_format()
        })
        .find_map(|range| range.try_with_sample_rate(SAMPLE_RATE))
        .unwrap_or(default);
    if !is_pcm(chosen.sample_format()) || chosen.channels() == 0 || chosen.sample_rate() == 0 {
        return Err(DeviceError::Unsupported {
            direction,
            device: device_name,
            reason: format!(
                "it offers {} channels of {} at {} Hz, and earshot needs PCM audio",
                chosen.channels(),
                chosen.sample_format(),
                chosen.sample_rate()
            ),
        });
    }
    let period = (u64::from(chosen.sample_rate()) * PERIOD.as_millis() as u64 / 1000) as u32;
    let buffer_size = match chosen.buffer_size() {
        SupportedBufferSize::Range { min, max } if (*min..=*max).contains(&period) => {
            BufferSize::Fixed(period)
        }
        _ => BufferSize::Default,
    };
    let config = StreamConfig {
        channels: chosen.channels(),
        sample_rate: chosen.sample_rate(),
        buffer_size,
    };
    let format = DeviceFormat {
        device: device_name,
        sample_rate: chosen.sample_rate(),
        channels: chosen.channels(),
        sample_format: chosen.sample_format().to_string(),
    };
    Ok((format, config, chosen.sample_format()))
}

fn is_pcm(format: SampleFormat) -> bool {
    !matches!(
        format,
        SampleFormat::DsdU8 | SampleFormat::DsdU16 | SampleFormat::DsdU32
    )
}
