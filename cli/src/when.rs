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

/// `at` for people: the UTC time, and how far from `now` (`in 1 h 30 min`, `5 min ago`).
pub fn describe(at: Timestamp, now: Timestamp) -> String {
    let (ahead, millis) = if at >= now {
        (true, at.0 - now.0)
    } else {
        (false, now.0 - at.0)
    };
    let minutes = millis.div_ceil(60_000);
    let span = match minutes {
        0..=59 => format!("{minutes} min"),
        60..=2879 => match minutes % 60 {
            0 => format!("{} h", minutes / 60),
            rest => format!("{} h {rest} min", minutes / 60),
        },
        _ => format!("{} days", minutes / 1440),
    };
    if ahead {
        format!("{at} (in {span})")
    } else {
        format!("{at} ({span} ago)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_told_with_how_far_they_are() {
        let now = Timestamp::from_secs(1_796_000_000);
        assert!(describe(now.plus_millis(90 * 60_000), now).ends_with("(in 1 h 30 min)"));
        assert!(describe(now.plus_millis(12 * 60_000), now).ends_with("(in 12 min)"));
        assert!(describe(now.plus_millis(3 * 86_400_000), now).ends_with("(in 3 days)"));
        assert!(describe(Timestamp(now.0 - 300_000), now).ends_with("(5 min ago)"));
    }

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
