//! Reading times people type: `2h`, `7d`, `90m`, or `2026-12-01T10:00Z`.

use anyhow::{Context, bail};
use earshot_protocol::Timestamp;

/// An expiry given on the command line: a duration from now, or an absolute time (RFC 3339; the
/// seconds may be left out).
pub fn parse_expiry(text: &str, now: Timestamp) -> anyhow::Result<Timestamp> {
    let text = text.trim();
    let at = if let Ok(duration) = humantime::parse_duration(text) {
        let millis = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        now.plus_millis(millis)
    } else {
        let parsed: jiff::Timestamp = text.parse().with_context(|| {
            format!(
                "{text:?} is neither a duration (like 2h, 7d, 90m) nor a UTC time \
                 (like 2026-12-01T10:00Z)"
            )
        })?;
        let millis = u64::try_from(parsed.as_millisecond())
            .with_context(|| format!("{text:?} is before 1970"))?;
        Timestamp(millis)
    };
    if at <= now {
        bail!("expiry {at} is not in the future");
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_times_parse() {
        let now = Timestamp::from_secs(1_796_000_000);
        let check = |text: &str, expected: Option<Timestamp>| {
            assert_eq!(parse_expiry(text, now).ok(), expected, "{text}");
        };
        check("2h", Some(now.plus_millis(7_200_000)));
        check("7d", Some(now.plus_millis(7 * 86_400_000)));
        check("90m", Some(now.plus_millis(5_400_000)));
        check(
            "2026-12-01T10:00Z",
            Some(Timestamp::from_secs(1_796_119_200)),
        );
        check(
            "2026-12-01T10:00:00+01:00",
            Some(Timestamp::from_secs(1_796_115_600)),
        );
        check("2020-01-01T00:00Z", None);
        check("soon", None);
        check("", None);
    }
}
