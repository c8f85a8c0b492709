//! Logging to the host: lines land in the deployment's ring buffer behind `degroup logs`.
//!
//! Use the macros [`trace!`](crate::trace), [`debug!`](crate::debug), [`info!`](crate::info),
//! [`warn!`](crate::warn) and [`error!`](crate::error); they take `format!` arguments.
//!
//! The host cuts lines longer than [`MAX_LINE_BYTES`] and caps the rate per deployment (by
//! default 100 lines per second with bursts of 200); lines over the rate are dropped and
//! counted, never queued, and never slow the plugin down.
//!
//! ```no_run
//! use degroup_sdk::{debug, error, info};
//!
//! let placed = 3;
//! info!("placed {placed} workloads");
//! debug!("state: {:?}", vec![1, 2, 3]);
//! error!("refused: {}", "value too large");
//! ```

use std::fmt;

use crate::host;

/// Longest line the host keeps, in bytes; longer lines are cut.
pub const MAX_LINE_BYTES: usize = 4096;

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Very detailed tracing.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected the plugin copes with.
    Warn,
    /// Something failed.
    Error,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Trace => "TRACE",
            Self::Debug => "DEBUG",
            Self::Info => "INFO",
            Self::Warn => "WARN",
            Self::Error => "ERROR",
        })
    }
}

/// Writes one log line at `level`. The macros call this; call it directly when the level is
/// only known at run time.
pub fn write(level: Level, message: &str) {
    host::log(level, message);
}

/// Logs a line at a level chosen at run time: `log!(Level::Warn, "x = {}", x)`.
#[macro_export]
macro_rules! log {
    ($level:expr, $($arg:tt)+) => {
        $crate::log::write($level, &::std::format!($($arg)+))
    };
}

/// Logs a line at [`Level::Trace`](crate::Level::Trace), with `format!` arguments.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)+) => {
        $crate::log::write($crate::log::Level::Trace, &::std::format!($($arg)+))
    };
}

/// Logs a line at [`Level::Debug`](crate::Level::Debug), with `format!` arguments.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => {
        $crate::log::write($crate::log::Level::Debug, &::std::format!($($arg)+))
    };
}

/// Logs a line at [`Level::Info`](crate::Level::Info), with `format!` arguments.
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => {
        $crate::log::write($crate::log::Level::Info, &::std::format!($($arg)+))
    };
}

/// Logs a line at [`Level::Warn`](crate::Level::Warn), with `format!` arguments.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => {
        $crate::log::write($crate::log::Level::Warn, &::std::format!($($arg)+))
    };
}

/// Logs a line at [`Level::Error`](crate::Level::Error), with `format!` arguments.
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => {
        $crate::log::write($crate::log::Level::Error, &::std::format!($($arg)+))
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    #[test]
    fn macros_format_and_keep_the_level() {
        testing::reset();
        crate::info!("a = {}", 1);
        crate::warn!("b");
        crate::log!(Level::Trace, "{:>3}", 7);
        let logs = testing::take_logs();
        let got: Vec<_> = logs.iter().map(|l| (l.level, l.message.as_str())).collect();
        assert_eq!(
            got,
            [
                (Level::Info, "a = 1"),
                (Level::Warn, "b"),
                (Level::Trace, "  7")
            ]
        );
        assert!(testing::logs().is_empty());
        assert_eq!(Level::Error.to_string(), "ERROR");
        assert!(Level::Trace < Level::Error);
    }
}
