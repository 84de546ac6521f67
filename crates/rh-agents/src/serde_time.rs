//! Stable JSON forms for times: timestamps as RFC 3339 text (UTC, microseconds), durations as
//! fractional milliseconds. Both read back exactly what they write.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Deserializer, Serializer};

pub(crate) mod timestamp {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_rfc3339_micros(*t))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_rfc3339(&text).map_err(|e| {
            serde::de::Error::custom(format!("invalid RFC 3339 timestamp {text:?}: {e}"))
        })
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

/// Formats a duration for people: `850µs`, `12.3ms`, `1.0s`, `2m 5.0s`.
pub(crate) struct Human(pub(crate) Duration);

impl std::fmt::Display for Human {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let d = self.0;
        // Below a second the value fits a u64: formatting a u64 is much cheaper than a u128.
        let micros = d.subsec_micros();
        if d.as_secs() == 0 && micros < 1_000 {
            write!(f, "{micros}µs")
        } else if d.as_secs() == 0 {
            write!(f, "{:.1}ms", d.as_secs_f64() * 1000.0)
        } else if d.as_secs() < 60 {
            write!(f, "{:.1}s", d.as_secs_f64())
        } else {
            let secs = d.as_secs_f64();
            let minutes = (secs / 60.0).floor();
            write!(f, "{}m {:.1}s", minutes as u64, secs - minutes * 60.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Human;

    fn human(d: Duration) -> String {
        Human(d).to_string()
    }
    use std::time::Duration;

    #[test]
    fn human_durations() {
        assert_eq!(human(Duration::from_micros(850)), "850µs");
        assert_eq!(human(Duration::from_micros(12_340)), "12.3ms");
        assert_eq!(human(Duration::from_secs(1)), "1.0s");
        assert_eq!(human(Duration::from_millis(125_000)), "2m 5.0s");
    }
}
