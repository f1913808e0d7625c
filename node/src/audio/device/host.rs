//! Which audio system to use: cpal's choice (on Linux, a PulseAudio server, PipeWire's included,
//! when the environment leads to its socket, else ALSA), and, when a PulseAudio server was found
//! but could not be used, why: cpal falls back to ALSA silently, which looks like "no sound card"
//! on a desktop that has one.
//!
//! The case seen in the wild: the pure-Rust PulseAudio client cpal uses sends an empty cookie when
//! the user has none (no `~/.config/pulse/cookie`, as on a machine where no PulseAudio client ever
//! ran), and the server refuses that as a protocol error.

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

/// A PulseAudio server found in the environment that could not be used, and what is used
/// instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostFallback {
    /// The server's socket.
    pub server: PathBuf,
    /// What the PulseAudio client said.
    pub error: String,
    /// What is probably behind it, and what to do, when that can be told.
    pub hint: Option<String>,
    /// The audio system used instead (`ALSA`).
    pub host: String,
}

impl fmt::Display for HostFallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a PulseAudio server was found at {} but could not be used ({})",
            self.server.display(),
            self.error
        )?;
        if let Some(hint) = &self.hint {
            write!(f, ", probably because {hint}")?;
        }
        write!(f, "; using {}", self.host)
    }
}

/// The audio system to use, as cpal's `default_host` would choose it, and why not PulseAudio
/// when a server was found but refused us.
#[cfg(any(
    target_os = "linux",
    target_os = "dragonfly",
    target_os = "freebsd",
    target_os = "netbsd"
))]
pub(super) fn choose() -> (cpal::Host, Option<HostFallback>) {
    // cpal looks for the socket the same way (`pulseaudio::socket_path_from_env`).
    let Some(server) = pulseaudio::socket_path_from_env() else {
        return (cpal::default_host(), None);
    };
    let err = match cpal::host_from_id(cpal::HostId::PulseAudio) {
        Ok(host) => return (host, None),
        Err(err) => err,
    };
    // Not `default_host`, which would try the same server again (and wait up to 2 s again).
    let host = cpal::host_from_id(cpal::HostId::Alsa).unwrap_or_else(|_| cpal::default_host());
    let fallback = HostFallback {
        server,
        error: err.to_string(),
        hint: cookie_hint(),
        host: host.id().name().to_owned(),
    };
    (host, Some(fallback))
}

#[cfg(not(any(
    target_os = "linux",
    target_os = "dragonfly",
    target_os = "freebsd",
    target_os = "netbsd"
)))]
pub(super) fn choose() -> (cpal::Host, Option<HostFallback>) {
    (cpal::default_host(), None)
}

/// Says so once per process (opening a device asks for the host each time).
pub(super) fn warn_once(fallback: &HostFallback) {
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| {
        tracing::warn!(server = %fallback.server.display(), error = %fallback.error,
            hint = fallback.hint.as_deref().unwrap_or(""), host = %fallback.host,
            "a PulseAudio server was found but could not be used");
    });
}

/// What is wrong with the client's PulseAudio cookie, if anything: without one (or with an empty
/// one) the client sends an empty cookie, which servers refuse even when they let anyone in.
#[cfg(any(
    target_os = "linux",
    target_os = "dragonfly",
    target_os = "freebsd",
    target_os = "netbsd"
))]
fn cookie_hint() -> Option<String> {
    const FIX: &str = "set $PULSE_COOKIE to the server's cookie file, or run a libpulse client \
                       such as pactl once to make one";
    match pulseaudio::cookie_path_from_env() {
        None => Some(format!(
            "no PulseAudio cookie was found ($PULSE_COOKIE, ~/.config/pulse/cookie, \
             ~/.pulse-cookie): {FIX}"
        )),
        Some(path) => match std::fs::read(&path) {
            Ok(cookie) if cookie.is_empty() => Some(format!(
                "the PulseAudio cookie {} is empty: {FIX}",
                path.display()
            )),
            Ok(_) => None,
            Err(err) => Some(format!(
                "the PulseAudio cookie {} cannot be read ({err}): {FIX}",
                path.display()
            )),
        },
    }
}
