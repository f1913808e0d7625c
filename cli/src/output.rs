//! Output for people and for scripts. Logs go to stderr through `tracing`; this is stdout.

use earshot_protocol::{Audience, Capability, InviteLink, PeerKey};
use qrcode::{EcLevel, QrCode};
use serde_json::{Value, json};

/// `println!` that treats a closed stdout (`earshot … | head`) as the reader being done: the
/// process exits quietly instead of panicking.
macro_rules! say {
    () => { $crate::output::write_line(format_args!("")) };
    ($($arg:tt)*) => { $crate::output::write_line(format_args!($($arg)*)) };
}
pub(crate) use say;

/// Like `say!`, for standard error.
macro_rules! shout {
    ($($arg:tt)*) => { $crate::output::write_err_line(format_args!($($arg)*)) };
}
pub(crate) use shout;

thread_local! {
    /// When set, output goes here instead of the terminal: a command run on behalf of another
    /// process through the control socket.
    static CAPTURE: std::cell::RefCell<Option<(String, String)>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f` with this thread's output captured; returns (stdout, stderr) and `f`'s result.
pub fn capture<T>(f: impl FnOnce() -> T) -> (String, String, T) {
    CAPTURE.with(|c| *c.borrow_mut() = Some((String::new(), String::new())));
    let result = f();
    let (out, err) = CAPTURE.with(|c| c.borrow_mut().take()).unwrap_or_default();
    (out, err, result)
}

fn captured(stderr: bool, args: std::fmt::Arguments<'_>) -> bool {
    CAPTURE.with(|c| match c.borrow_mut().as_mut() {
        Some((out, err)) => {
            use std::fmt::Write;
            let target = if stderr { err } else { out };
            let _ = writeln!(target, "{args}");
            true
        }
        None => false,
    })
}

pub fn write_err_line(args: std::fmt::Arguments<'_>) {
    if !captured(true, args) {
        eprintln!("{args}");
    }
}

pub fn write_line(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    if captured(false, args) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(err) = writeln!(out, "{args}") {
        if err.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        tracing::warn!(%err, "could not write to stdout");
    }
}

/// Prints one JSON value on its own line.
pub fn print_json(value: &Value) {
    say!("{value}");
}

/// Prints a node event as one JSON object on its own line (events only the node uses, which
/// have no JSON form, print nothing).
pub fn print_event(event: &earshot_node::Event) {
    if let Ok(line) = serde_json::to_string(event) {
        say!("{line}");
    }
}

/// A terminal QR code of the link (uppercase, so QR's compact alphanumeric mode applies).
pub fn qr(link: &InviteLink) -> anyhow::Result<String> {
    let code = QrCode::with_error_correction_level(link.encode_for_qr(), EcLevel::L)?;
    Ok(code
        .render::<qrcode::render::unicode::Dense1x2>()
        .quiet_zone(true)
        .build())
}

pub fn peer(key: &PeerKey) -> String {
    key.as_peer_id().to_string()
}

pub fn audience_text(audience: &Audience) -> String {
    match audience {
        Audience::Bearer => "anyone holding the link".into(),
        Audience::Bound(key) => format!("only {}", peer(key)),
    }
}

pub fn audience_json(audience: &Audience) -> Value {
    match audience {
        Audience::Bearer => Value::Null,
        Audience::Bound(key) => json!(peer(key)),
    }
}

/// One line per link of a capability chain, host's grant first.
pub fn chain_json(capability: &Capability) -> Value {
    capability
        .chain()
        .iter()
        .map(|link| {
            json!({
                "issuer": peer(&link.issuer),
                "role": link.role.as_str(),
                "audience": audience_json(&link.audience),
                "not_before": link.not_before.to_string(),
                "expires_at": link.expires_at.to_string(),
                "delegation_depth": link.depth,
                "id": link.id().to_string(),
            })
        })
        .collect()
}
