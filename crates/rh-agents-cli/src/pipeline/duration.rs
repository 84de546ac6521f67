//! Human durations in pipeline files and on the command line: `"500ms"`, `"2s"`, `"1m30s"`.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// Parses a human duration (`"500ms"`, `"2s"`, `"1m"`, `"1h 30m"`): a number followed by a
/// unit, as many times as needed. A bare number is refused, so `"5"` is not silently seconds.
///
/// # Errors
///
/// A message saying what is wrong, with examples of what is accepted.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| {
        format!("invalid duration \"{text}\": {e} (write e.g. \"500ms\", \"2s\", \"1m\")")
    })
}

/// A duration written as a human string in a pipeline file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string such as \"500ms\", \"2s\" or \"1m\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<HumanDuration, E> {
                parse_duration(v).map(HumanDuration).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_compounds_parse() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration(" 1m 30s "), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn bad_durations_say_what_is_accepted() {
        for bad in ["5", "fast", "-1s", "", "2 parsecs"] {
            let err = parse_duration(bad).unwrap_err();
            assert!(
                err.starts_with(&format!("invalid duration \"{bad}\"")),
                "{err}"
            );
            assert!(err.contains("\"500ms\""), "{err}");
        }
    }

    #[test]
    fn toml_values_must_be_strings() {
        #[derive(Deserialize)]
        struct T {
            #[allow(dead_code)] // read only through the error
            d: HumanDuration,
        }
        let ok: T = toml::from_str("d = \"250ms\"").unwrap();
        assert_eq!(ok.d, HumanDuration(Duration::from_millis(250)));
        let err = toml::from_str::<T>("d = 5").err().unwrap();
        assert!(err.message().contains("a duration string"), "{err}");
    }
}
