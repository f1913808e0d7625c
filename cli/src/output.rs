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

/// While the room view has the terminal (see `cmd::live::view`), whatever would be printed
/// (lines, errors, logs) waits here for it to show.
static FOR_VIEW: std::sync::Mutex<Option<Vec<String>>> = std::sync::Mutex::new(None);

/// Sends what would be printed to the room view from now on (`true`), or to the terminal again.
pub fn to_view(on: bool) {
    let mut held = FOR_VIEW
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    *held = on.then(Vec::new);
}

/// What was printed for the view since the last call.
pub fn take_for_view() -> Vec<String> {
    FOR_VIEW
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .as_mut()
        .map(std::mem::take)
        .unwrap_or_default()
}

/// Keeps `text` for the view if it has the terminal.
fn held_for_view(text: &str) -> bool {
    match FOR_VIEW
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .as_mut()
    {
        Some(held) => {
            held.extend(text.lines().map(str::to_owned));
            true
        }
        None => false,
    }
}

fn captured(stderr: bool, args: std::fmt::Arguments<'_>) -> bool {
    let captured = CAPTURE.with(|c| match c.borrow_mut().as_mut() {
        Some((out, err)) => {
            use std::fmt::Write;
            let target = if stderr { err } else { out };
            let _ = writeln!(target, "{args}");
            true
        }
        None => false,
    });
    captured || held_for_view(&args.to_string())
}

/// Where logs go: standard error, or the room view while it has the terminal (their colours
/// taken out).
pub struct Logs;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = LogLine;

    fn make_writer(&'a self) -> LogLine {
        LogLine(Vec::new())
    }
}

/// One log record, written when dropped.
pub struct LogLine(Vec<u8>);

impl std::io::Write for LogLine {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.0);
        if !held_for_view(&without_colours(&text)) {
            use std::io::Write;
            let _ = std::io::stderr().lock().write_all(&self.0);
        }
    }
}

/// `text` without the colour sequences (`ESC [ … m`) a log line carries.
fn without_colours(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether a terminal would act on `c` rather than show it: control characters (C0, DEL, C1:
/// escape sequences, carriage returns, backspaces) and the marks that reorder text (bidi
/// overrides and isolates, which can make a name read as something else).
fn acted_on(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every character a terminal would act on written as a `\u00XX` escape (which a
/// JSON string reads back as the same character), line breaks and tabs too unless `lines`.
/// Names, titles and chat come from strangers: printed through this, they cannot clear the
/// screen, colour it, or fake a line of their own ("The room was ended by …").
pub fn printable(text: &str, lines: bool) -> std::borrow::Cow<'_, str> {
    let kept = |c: char| lines && matches!(c, '\n' | '\t');
    if !text.chars().any(|c| acted_on(c) && !kept(c)) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if acted_on(c) && !kept(c) {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// One line of text from strangers, shown as one line (its breaks escaped too).
pub fn one_line(text: &str) -> std::borrow::Cow<'_, str> {
    printable(text, false)
}

pub fn write_err_line(args: std::fmt::Arguments<'_>) {
    let line = args.to_string();
    let line = printable(&line, true);
    if !captured(true, format_args!("{line}")) {
        eprintln!("{line}");
    }
}

/// Writes a line of stdout, with whatever a terminal would act on escaped (see [`printable`]):
/// nothing printed through `say!` can move the cursor, clear or colour the screen.
pub fn write_line(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let line = args.to_string();
    let line = printable(&line, true);
    if captured(false, format_args!("{line}")) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(err) = writeln!(out, "{line}") {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_terminal_would_act_on_is_shown_escaped() {
        let name = "Hana\n\u{1b}[2J\u{1b}[31mThe room was ended by Hana\r\u{9b}6n\u{202e}olleh";
        let shown = one_line(name);
        assert!(!shown.chars().any(acted_on), "{shown}");
        assert!(!shown.contains('\n'));
        assert_eq!(
            shown,
            "Hana\\u000a\\u001b[2J\\u001b[31mThe room was ended by Hana\\u000d\\u009b6n\\u202eolleh"
        );
        // Our own multi-line text keeps its lines; plain text is not copied.
        assert_eq!(printable("a\n\tb", true), "a\n\tb");
        assert!(matches!(
            printable("café 🦜", false),
            std::borrow::Cow::Borrowed(_)
        ));
        // In a JSON line the escape reads back as the same character.
        let json = serde_json::to_string(&serde_json::json!({ "name": "a\u{9b}b" })).expect("json");
        let shown = printable(&json, true);
        let back: serde_json::Value = serde_json::from_str(&shown).expect("still JSON");
        assert_eq!(back["name"], "a\u{9b}b");
    }

    #[test]
    fn logs_lose_their_colours_for_the_view() {
        assert_eq!(
            without_colours("\u{1b}[2m2026\u{1b}[0m \u{1b}[33m WARN\u{1b}[0m x"),
            "2026  WARN x"
        );
    }
}
