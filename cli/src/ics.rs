//! A scheduled room as a calendar entry (iCalendar, RFC 5545): one event, its start from the
//! room's signed descriptor, an hour long, with a listener link to join it.

use earshot_protocol::{InviteLink, RoomDescriptor, Timestamp};

/// How long the entry says the room lasts (the room itself ends when its host ends it).
const LENGTH_MS: u64 = 60 * 60 * 1000;

/// The calendar (with CRLF line ends, long lines folded) for `descriptor`'s room, stamped `now`.
pub fn event(descriptor: &RoomDescriptor, link: &InviteLink, now: Timestamp) -> String {
    let starts_at = descriptor.starts_at().unwrap_or(now);
    let about = descriptor
        .schedule
        .as_ref()
        .map(|schedule| schedule.about.as_str())
        .unwrap_or_default();
    let description = if about.is_empty() {
        format!("Join with: earshot join {link}")
    } else {
        format!("{about}\n\nJoin with: earshot join {link}")
    };
    let lines = [
        "BEGIN:VCALENDAR".to_owned(),
        "VERSION:2.0".to_owned(),
        format!(
            "PRODID:-//Earshot//earshot {}//EN",
            env!("CARGO_PKG_VERSION")
        ),
        "CALSCALE:GREGORIAN".to_owned(),
        "METHOD:PUBLISH".to_owned(),
        "BEGIN:VEVENT".to_owned(),
        format!("UID:{}@earshot", descriptor.id),
        format!("DTSTAMP:{}", utc(now)),
        format!("DTSTART:{}", utc(starts_at)),
        format!("DTEND:{}", utc(starts_at.plus_millis(LENGTH_MS))),
        format!("SUMMARY:{}", text(&descriptor.title)),
        format!("DESCRIPTION:{}", text(&description)),
        format!("URL:{link}"),
        "END:VEVENT".to_owned(),
        "END:VCALENDAR".to_owned(),
    ];
    lines.iter().map(|line| fold(line)).collect()
}

/// A UTC date-time as iCalendar writes it (`20261224T180000Z`).
fn utc(at: Timestamp) -> String {
    let millis = i64::try_from(at.0).unwrap_or(i64::MAX);
    match jiff::Timestamp::from_millisecond(millis) {
        Ok(time) => time.strftime("%Y%m%dT%H%M%SZ").to_string(),
        Err(_) => "99991231T235959Z".to_owned(),
    }
}

/// A TEXT value: backslashes, semicolons, commas and line breaks escaped; other control
/// characters (a stranger's title could hold any) left out.
fn text(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// One content line, folded at 75 octets (never inside a character), ending in CRLF.
fn fold(line: &str) -> String {
    let mut out = String::with_capacity(line.len() + line.len() / 70 * 3 + 2);
    let mut used = 0;
    for c in line.chars() {
        if used + c.len_utf8() > 75 {
            out.push_str("\r\n ");
            used = 1;
        }
        out.push(c);
        used += c.len_utf8();
    }
    out.push_str("\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_lines_folded() {
        assert_eq!(text("a;b,c\\d\ne\u{1b}[2J"), "a\\;b\\,c\\\\d\\ne[2J");
        let folded = fold(&"é".repeat(60));
        for line in folded.split("\r\n") {
            assert!(line.len() <= 75, "{line:?}");
        }
        assert_eq!(
            folded.replace("\r\n ", ""),
            format!("{}\r\n", "é".repeat(60))
        );
        assert_eq!(utc(Timestamp::from_secs(1_798_135_200)), "20261224T180000Z");
    }
}
