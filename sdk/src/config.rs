//! The deployment's configuration, as handed to [`Plugin::init`](crate::Plugin::init).

use std::fmt;
use std::str::FromStr;

/// The deployment's configuration: the `--config key=value` pairs of `degroup deploy` (or
/// `degroup plugin run`), in the order they were given.
///
/// A key may appear more than once; [`get`](Config::get) and the parse helpers read the last
/// occurrence (a later `--config` overrides an earlier one), [`get_all`](Config::get_all)
/// returns every one.
///
/// ```
/// use degroup_sdk::Config;
///
/// let config = Config::from(vec![
///     ("nodes".to_string(), "3".to_string()),
///     ("name".to_string(), "edge".to_string()),
/// ]);
/// assert_eq!(config.get("name"), Some("edge"));
/// assert_eq!(config.get_or("zone", "default"), "default");
/// assert_eq!(config.parse_or("nodes", 1u32), Ok(3));
/// assert_eq!(config.parse_or("report_every", 10u64), Ok(10));
/// assert!(config.parse::<u32>("name").is_err());
/// assert!(config.require("zone").is_err());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    entries: Vec<(String, String)>,
}

impl Config {
    /// An empty configuration.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of `key` (its last occurrence), if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value given for `key`, in order.
    pub fn get_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.entries
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `key`, or `default` when it is absent.
    pub fn get_or<'a>(&'a self, key: &str, default: &'a str) -> &'a str {
        self.get(key).unwrap_or(default)
    }

    /// The value of `key`, or [`ConfigError::Missing`] when it is absent.
    pub fn require(&self, key: &str) -> Result<&str, ConfigError> {
        self.get(key).ok_or_else(|| ConfigError::Missing {
            key: key.to_string(),
        })
    }

    /// Whether `key` was given at all.
    pub fn contains_key(&self, key: &str) -> bool {
        self.entries.iter().any(|(k, _)| k == key)
    }

    /// The value of `key` parsed as `T`: `Ok(None)` when absent, [`ConfigError::Invalid`] when
    /// present but not a valid `T`. Surrounding whitespace is ignored.
    pub fn parse<T>(&self, key: &str) -> Result<Option<T>, ConfigError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        match self.get(key) {
            None => Ok(None),
            Some(raw) => raw
                .trim()
                .parse::<T>()
                .map(Some)
                .map_err(|e| ConfigError::Invalid {
                    key: key.to_string(),
                    value: raw.to_string(),
                    reason: e.to_string(),
                }),
        }
    }

    /// The value of `key` parsed as `T`, or `default` when absent; [`ConfigError::Invalid`]
    /// when present but not a valid `T` (a typo is an error, never silently the default).
    pub fn parse_or<T>(&self, key: &str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        Ok(self.parse(key)?.unwrap_or(default))
    }

    /// The value of `key` parsed as `T`; [`ConfigError::Missing`] when absent.
    pub fn parse_required<T>(&self, key: &str) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        self.parse(key)?.ok_or_else(|| ConfigError::Missing {
            key: key.to_string(),
        })
    }

    /// Every `(key, value)` pair, in the order given.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// How many pairs were given (counting repeated keys).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no configuration was given.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The pairs, as the host sent them.
    pub fn into_inner(self) -> Vec<(String, String)> {
        self.entries
    }
}

impl From<Vec<(String, String)>> for Config {
    fn from(entries: Vec<(String, String)>) -> Self {
        Self { entries }
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Config {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self {
            entries: iter
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }
}

impl<'a> IntoIterator for &'a Config {
    type Item = (&'a str, &'a str);
    type IntoIter = Box<dyn Iterator<Item = (&'a str, &'a str)> + 'a>;

    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

/// Why a configuration value could not be read. Converts into `String`, so `?` works in
/// [`Plugin::init`](crate::Plugin::init).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// A required key was not given.
    Missing {
        /// The key.
        key: String,
    },
    /// A key was given with a value that does not parse.
    Invalid {
        /// The key.
        key: String,
        /// The value as given.
        value: String,
        /// Why it does not parse.
        reason: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing { key } => write!(f, "config: `{key}` is required (--config {key}=...)"),
            Self::Invalid { key, value, reason } => {
                write!(f, "config: `{key}={value}` is invalid: {reason}")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

impl From<ConfigError> for String {
    fn from(e: ConfigError) -> Self {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Config {
        pairs.iter().copied().collect()
    }

    #[test]
    fn last_occurrence_wins_and_all_are_kept() {
        let c = config(&[("a", "1"), ("b", "x"), ("a", "2")]);
        assert_eq!(c.get("a"), Some("2"));
        assert_eq!(c.get_all("a").collect::<Vec<_>>(), ["1", "2"]);
        assert_eq!(c.len(), 3);
        assert!(c.contains_key("b"));
        assert!(!c.contains_key("c"));
        assert_eq!(c.iter().next(), Some(("a", "1")));
    }

    #[test]
    fn parse_helpers_report_the_key_and_value() {
        let c = config(&[("n", " 7 "), ("bad", "seven")]);
        assert_eq!(c.parse::<u32>("n"), Ok(Some(7)));
        assert_eq!(c.parse::<u32>("absent"), Ok(None));
        assert_eq!(c.parse_or("absent", 5u32), Ok(5));
        assert_eq!(
            c.parse_required::<u32>("absent"),
            Err(ConfigError::Missing {
                key: "absent".into()
            })
        );
        let err = c
            .parse_or("bad", 1u32)
            .err()
            .map(String::from)
            .unwrap_or_default();
        assert_eq!(
            err,
            "config: `bad=seven` is invalid: invalid digit found in string"
        );
        let missing = String::from(ConfigError::Missing { key: "k".into() });
        assert_eq!(missing, "config: `k` is required (--config k=...)");
    }

    #[test]
    fn empty_config() {
        let c = Config::new();
        assert!(c.is_empty());
        assert_eq!(c.get_or("x", "d"), "d");
        assert!(c.require("x").is_err());
        assert!(c.into_inner().is_empty());
    }
}
