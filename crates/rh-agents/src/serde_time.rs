//! Stable JSON forms for times: timestamps as RFC 3339 text (UTC, microseconds), durations as
//! fractional milliseconds. Both read back exactly what they write, and what they read they
//! write back unchanged: a timestamp finer than a microsecond is refused rather than cut.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Deserializer, Serializer};

pub(crate) mod timestamp {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_rfc3339_micros(*t))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let text = String::deserialize(d)?;
        parse(&text).map_err(serde::de::Error::custom)
    }

    /// Reads an RFC 3339 timestamp (UTC, 1970–9999) of at most microsecond precision: a
    /// finer one would be written back cut to microseconds, so that reading then writing a
    /// record would change it.
    pub(crate) fn parse(text: &str) -> Result<SystemTime, String> {
        let t = humantime::parse_rfc3339(text)
            .map_err(|e| format!("invalid RFC 3339 timestamp {text:?}: {e}"))?;
        let nanos = t
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        if nanos % 1_000 != 0 {
            return Err(format!(
                "timestamp {text:?} is finer than a microsecond: rh-agents keeps times to the \
                 microsecond (at most 6 fractional digits), so it would not be kept as written"
            ));
        }
        Ok(t)
    }
}

/// The current time, cut to whole microseconds: the precision of the JSON form, so a record
/// read back from JSON equals the record written.
pub(crate) fn now() -> SystemTime {
    let now = SystemTime::now();
    match now.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(since) => {
            SystemTime::UNIX_EPOCH + Duration::new(since.as_secs(), since.subsec_micros() * 1_000)
        }
        Err(_) => now,
    }
}

fn to_ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn from_ms<E: serde::de::Error>(ms: f64) -> Result<Duration, E> {
    Duration::try_from_secs_f64(ms / 1000.0).map_err(|_| {
        E::custom(format!(
            "invalid duration {ms} ms: must be a finite, non-negative number"
        ))
    })
}

pub(crate) mod duration_ms {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(to_ms(*d))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        from_ms(f64::deserialize(d)?)
    }
}

pub(crate) mod option_duration_ms {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&to_ms(*d)),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        Option::<f64>::deserialize(d)?.map(from_ms).transpose()
    }
}

/// Formats a duration for people: `850µs`, `12.3ms`, `1.0s`, `2m 5.0s`, `2h 0m 0s`,
/// `3d 4h 5m`. From a second up, the value is rounded to the last unit shown (so `59.96s`
/// is `1m 0.0s`, never `60.0s`); the units stop at days, so an absurd duration is a count of
/// days, not of minutes.
pub(crate) struct Human(pub(crate) Duration);

impl std::fmt::Display for Human {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const MINUTE: u128 = 60;
        const HOUR: u128 = 60 * MINUTE;
        const DAY: u128 = 24 * HOUR;
        let d = self.0;
        // Below a second the value fits a u64: formatting a u64 is much cheaper than a u128.
        let micros = d.subsec_micros();
        if d.as_secs() == 0 && micros < 1_000 {
            return write!(f, "{micros}µs");
        }
        if d.as_secs() == 0 && d.subsec_nanos() < 999_950_000 {
            return write!(f, "{:.1}ms", d.as_secs_f64() * 1000.0);
        }
        // Tenths of a second in whole numbers, rounded half to even as `{:.1}` rounds an
        // exact tie (1.25 s is `1.2s`): no unit ever shows 60. (u128: `Duration::MAX` fits.)
        let nanos = d.as_nanos();
        let (mut tenths, rest) = (nanos / 100_000_000, nanos % 100_000_000);
        if rest > 50_000_000 || (rest == 50_000_000 && tenths % 2 == 1) {
            tenths += 1;
        }
        let secs = tenths / 10;
        if secs < MINUTE {
            write!(f, "{secs}.{}s", tenths % 10)
        } else if secs < HOUR {
            write!(f, "{}m {}.{}s", secs / MINUTE, secs % MINUTE, tenths % 10)
        } else {
            // Whole seconds from an hour up (rounded, not cut).
            let secs = (tenths + 5) / 10;
            if secs < DAY {
                write!(
                    f,
                    "{}h {}m {}s",
                    secs / HOUR,
                    secs % HOUR / MINUTE,
                    secs % MINUTE
                )
            } else {
                // Whole minutes from a day up.
                let mins = (secs + MINUTE / 2) / MINUTE;
                write!(
                    f,
                    "{}d {}h {}m",
                    mins / (DAY / MINUTE),
                    mins % (DAY / MINUTE) / 60,
                    mins % 60
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{timestamp, Human};
    use std::time::Duration;

    fn human(d: Duration) -> String {
        Human(d).to_string()
    }

    #[test]
    fn human_durations() {
        assert_eq!(human(Duration::from_micros(850)), "850µs");
        assert_eq!(human(Duration::from_micros(12_340)), "12.3ms");
        assert_eq!(human(Duration::from_secs(1)), "1.0s");
        assert_eq!(human(Duration::from_millis(125_000)), "2m 5.0s");
    }

    #[test]
    fn an_hour_or_more_is_shown_in_hours() {
        assert_eq!(human(Duration::from_secs(7_200)), "2h 0m 0s");
        assert_eq!(human(Duration::from_millis(3_723_400)), "1h 2m 3s");
        assert_eq!(human(Duration::from_millis(3_599_960)), "1h 0m 0s");
        assert_eq!(human(Duration::from_secs(86_399)), "23h 59m 59s");
    }

    #[test]
    fn a_day_or_more_is_shown_in_days_and_absurd_values_stay_short() {
        assert_eq!(human(Duration::from_secs(86_400)), "1d 0h 0m");
        assert_eq!(
            human(Duration::from_secs(3 * 86_400 + 4 * 3_600 + 5 * 60)),
            "3d 4h 5m"
        );
        assert_eq!(human(Duration::MAX), "213503982334601d 7h 0m");
    }

    #[test]
    fn rounding_never_shows_sixty() {
        assert_eq!(human(Duration::from_millis(99_996)), "1m 40.0s");
        assert_eq!(human(Duration::from_millis(59_960)), "1m 0.0s");
        assert_eq!(human(Duration::from_millis(9_960)), "10.0s");
        assert_eq!(human(Duration::from_micros(999_960)), "1.0s");
        assert_eq!(human(Duration::from_micros(999_940)), "999.9ms");
        // An exact tie rounds to even, as `{:.1}` does.
        assert_eq!(human(Duration::from_millis(1_250)), "1.2s");
        assert_eq!(human(Duration::from_millis(1_350)), "1.4s");
    }

    #[test]
    fn timestamps_finer_than_a_microsecond_are_refused_and_exact_ones_kept() {
        let err = timestamp::parse("2024-05-01T10:00:00.123456789Z").unwrap_err();
        assert!(err.contains("finer than a microsecond"), "{err}");
        // Trailing zeros change nothing: the value is exact.
        let t = timestamp::parse("2024-05-01T10:00:00.123456000Z").unwrap();
        assert_eq!(t, timestamp::parse("2024-05-01T10:00:00.123456Z").unwrap());
        assert_eq!(
            humantime::format_rfc3339_micros(t).to_string(),
            "2024-05-01T10:00:00.123456Z"
        );
    }
}
