//! Logging. The plugin logs through the `log` facade (`log::warn!`, ...); this module is
//! its sink. stdout carries only protocol output, so lines go to stderr (which runtimes
//! usually capture) or to a file named in the configuration.
//!
//! Configuration, the later overriding the earlier:
//! - `"log": {"level": "warn", "file": "/var/log/ipam-cni.log"}` in the `ipam` section;
//! - environment `IPAM_CNI_LOG` (a level) and `IPAM_CNI_LOG_FILE` (a path).
//!
//! Levels: `off`, `error`, `warn` (default), `info`, `debug`. Records of this project's
//! crates are written at the configured level; those of the libraries under them (the
//! database engines) only from `warn` up, since their debugging output is about their own
//! internals.

use std::fmt;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// How much is logged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Nothing.
    Off,
    /// Failures.
    Error,
    /// Failures and anything surprising (the default).
    Warn,
    /// One line per invocation with its outcome.
    Info,
    /// Everything.
    Debug,
}

impl Level {
    /// Parses a level name (case-insensitive).
    ///
    /// ```
    /// use ipam_cni::cni::log::Level;
    /// assert_eq!(Level::parse("INFO"), Some(Level::Info));
    /// assert_eq!(Level::parse("loud"), None);
    /// ```
    pub fn parse(text: &str) -> Option<Level> {
        Some(match text.to_ascii_lowercase().as_str() {
            "off" | "none" => Level::Off,
            "error" => Level::Error,
            "warn" | "warning" => Level::Warn,
            "info" => Level::Info,
            "debug" | "trace" => Level::Debug,
            _ => return None,
        })
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Off => "OFF",
            Level::Error => "ERROR",
            Level::Warn => "WARN",
            Level::Info => "INFO",
            Level::Debug => "DEBUG",
        })
    }
}

/// Where and how much to log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// The most verbose level written.
    pub level: Level,
    /// A file to append to; stderr when absent.
    pub file: Option<PathBuf>,
}

impl Default for LogConfig {
    fn default() -> LogConfig {
        LogConfig {
            level: Level::Warn,
            file: None,
        }
    }
}

impl LogConfig {
    /// This configuration with the environment's overrides applied (`IPAM_CNI_LOG`,
    /// `IPAM_CNI_LOG_FILE`); an unknown level in the environment is ignored with a warning,
    /// since the environment is not the request's to get wrong.
    pub fn with_env(mut self, var: impl Fn(&str) -> Option<String>) -> LogConfig {
        if let Some(text) = var("IPAM_CNI_LOG").filter(|s| !s.is_empty()) {
            match Level::parse(&text) {
                Some(level) => self.level = level,
                None => eprintln!("ipam-cni: IPAM_CNI_LOG={text:?} is not a level; ignored"),
            }
        }
        if let Some(file) = var("IPAM_CNI_LOG_FILE").filter(|s| !s.is_empty()) {
            self.file = Some(PathBuf::from(file));
        }
        self
    }
}

impl Level {
    /// The `log` facade's filter for this level.
    pub fn filter(self) -> log::LevelFilter {
        match self {
            Level::Off => log::LevelFilter::Off,
            Level::Error => log::LevelFilter::Error,
            Level::Warn => log::LevelFilter::Warn,
            Level::Info => log::LevelFilter::Info,
            Level::Debug => log::LevelFilter::Debug,
        }
    }
}

/// The sink: one line per record, to the configured file or stderr.
struct Sink {
    config: Mutex<LogConfig>,
}

static SINK: Sink = Sink {
    config: Mutex::new(LogConfig {
        level: Level::Warn,
        file: None,
    }),
};

impl Sink {
    fn config(&self) -> LogConfig {
        self.config
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Whether a record of `target` at `level` is written under `cfg`.
fn wanted(cfg: &LogConfig, target: &str, level: log::Level) -> bool {
    let ours = target.starts_with("ipam_");
    // kube's client warns on every connection made with `insecure-skip-tls-verify`, which is
    // the kubeconfig's choice, not news; its errors still show. (Each of its failed requests
    // also reaches the caller as an error, which the plugin reports.)
    let routine = target.starts_with("kube_client") && level > log::Level::Error;
    level <= cfg.level.filter() && (ours || (level <= log::Level::Warn && !routine))
}

impl log::Log for Sink {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        wanted(&self.config(), metadata.target(), metadata.level())
    }

    /// Logging never fails an invocation: a log file that cannot be written falls back to
    /// stderr.
    fn log(&self, record: &log::Record<'_>) {
        let cfg = self.config();
        if !wanted(&cfg, record.target(), record.level()) {
            return;
        }
        let line = line(
            SystemTime::now(),
            record.level(),
            record.target(),
            record.args(),
        );
        if let Some(path) = &cfg.file {
            let written = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut f| f.write_all(line.as_bytes()));
            if written.is_ok() {
                return;
            }
        }
        let kept = CAPTURED.with(|c| match c.borrow_mut().as_mut() {
            Some(lines) => {
                lines.push_str(&line);
                true
            }
            None => false,
        });
        if !kept {
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
    }

    /// Nothing is buffered: every line is written whole when it is logged.
    fn flush(&self) {}
}

std::thread_local! {
    /// The stderr lines of this thread's invocation, while [`capturing`] runs it.
    static CAPTURED: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f` with what this thread would log to stderr kept, and returns it beside `f`'s
/// result: the node agent sends an invocation's lines back to the plugin, whose stderr is
/// the one the runtime keeps. Lines for a log file still go to the file.
pub fn capturing<T>(f: impl FnOnce() -> T) -> (T, String) {
    CAPTURED.with(|c| *c.borrow_mut() = Some(String::new()));
    let result = f();
    let lines = CAPTURED.with(|c| c.borrow_mut().take()).unwrap_or_default();
    (result, lines)
}

/// What this thread logged to stderr since [`capturing`] began or this was last called,
/// taken out: the lines of an answer about to be sent.
pub fn take_captured() -> String {
    CAPTURED.with(|c| {
        c.borrow_mut()
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    })
}

/// One line: `TIME ipam-cni[PID] LEVEL MESSAGE`; a library's records say which library.
/// Line breaks inside the message (a parser's message quoting the input, a value from the
/// environment) are written as `\n` and `\r`: a record is one line however it was made, so
/// that it cannot be cut in two nor forge the next.
fn line(at: SystemTime, level: log::Level, target: &str, msg: &fmt::Arguments<'_>) -> String {
    let from = if target.starts_with("ipam_") {
        String::new()
    } else {
        format!("{target}: ")
    };
    let msg = msg.to_string().replace('\n', "\\n").replace('\r', "\\r");
    format!(
        "{} ipam-cni[{}] {level} {from}{msg}\n",
        timestamp(at),
        std::process::id()
    )
}

/// Makes this module the `log` facade's sink, writing as `cfg` says from now on.
pub fn init(cfg: LogConfig) {
    let level = cfg.level.filter();
    *SINK.config.lock().unwrap_or_else(|e| e.into_inner()) = cfg;
    // Already set when called again (tests call it per invocation): the new settings above
    // are what counts.
    let _ = log::set_logger(&SINK);
    log::set_max_level(level);
}

/// RFC 3339 UTC with milliseconds, computed without a date crate (days to civil date, after
/// Howard Hinnant's algorithm).
pub fn timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_rfc3339() {
        let at = |s| timestamp(UNIX_EPOCH + Duration::from_millis(s));
        assert_eq!(at(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(at(1_795_689_296_000), "2026-11-26T10:34:56.000Z");
    }

    #[test]
    fn lines_say_time_process_level_and_source() {
        let at = UNIX_EPOCH + Duration::from_millis(951_782_400_123);
        let pid = std::process::id();
        assert_eq!(
            line(
                at,
                log::Level::Warn,
                "ipam_cni::cni",
                &format_args!("x {}", 1)
            ),
            format!("2000-02-29T00:00:00.123Z ipam-cni[{pid}] WARN x 1\n")
        );
        assert_eq!(
            line(at, log::Level::Error, "sled::tree", &format_args!("y")),
            format!("2000-02-29T00:00:00.123Z ipam-cni[{pid}] ERROR sled::tree: y\n")
        );
        assert_eq!(
            line(
                at,
                log::Level::Warn,
                "ipam_cni::cni",
                &format_args!("read /k: error: line 5\n 5 |   cluster: [\r\n   |  ^ here")
            ),
            format!(
                "2000-02-29T00:00:00.123Z ipam-cni[{pid}] WARN read /k: error: line 5\\n 5 |   cluster: [\\r\\n   |  ^ here\n"
            ),
            "a record is one line, whatever its message"
        );
        let debug = LogConfig {
            level: Level::Debug,
            file: None,
        };
        assert!(wanted(&debug, "ipam_cni::cni::command", log::Level::Debug));
        assert!(!wanted(&debug, "sled::pagecache", log::Level::Debug));
        assert!(wanted(&debug, "sled::pagecache", log::Level::Warn));
        assert!(!wanted(&LogConfig::default(), "ipam_cni", log::Level::Info));
    }

    #[test]
    fn environment_overrides_configuration() {
        let cfg = LogConfig::default().with_env(|k| match k {
            "IPAM_CNI_LOG" => Some("debug".into()),
            "IPAM_CNI_LOG_FILE" => Some("/tmp/x.log".into()),
            _ => None,
        });
        assert_eq!(cfg.level, Level::Debug);
        assert_eq!(cfg.file, Some(PathBuf::from("/tmp/x.log")));
        let kept = LogConfig::default().with_env(|_| Some("loud".into()));
        assert_eq!(kept.level, Level::Warn);
    }
}
