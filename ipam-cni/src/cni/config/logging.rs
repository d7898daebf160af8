//! `ipam.log`: the level and the file the plugin logs to. Read apart from
//! [`NetConf`](super::NetConf), so that a bad log setting keeps no command from doing its
//! work.

use std::path::PathBuf;

use serde::Deserialize;
use serde_json::Value;

use super::fields::{invalid, typed};
use crate::cni::error::CniError;
use crate::cni::log::{Level, LogConfig};

#[derive(Deserialize)]
#[serde(expecting = "an object with `level` and `file`")]
struct LogWire {
    #[serde(default)]
    level: Option<String>,
    #[serde(default)]
    file: Option<String>,
}

/// Reads `ipam.log` (absent: the default). Kept out of [`NetConf`](super::NetConf) so that a command can go
/// on without it: a log setting is no reason to keep an address from being released.
///
/// ```
/// use ipam_cni::cni::config::log_config;
/// use ipam_cni::cni::log::Level;
/// let conf = serde_json::json!({"ipam": {"log": {"level": "info"}}});
/// assert_eq!(log_config(&conf).unwrap().level, Level::Info);
/// let bad = serde_json::json!({"ipam": {"log": {"level": "loud"}}});
/// assert_eq!(log_config(&bad).unwrap_err().code().number(), 7);
/// ```
pub fn log_config(conf: &Value) -> Result<LogConfig, CniError> {
    let mut log = LogConfig::default();
    let Some(section) = conf
        .get("ipam")
        .and_then(|i| i.get("log"))
        .filter(|l| !l.is_null())
    else {
        return Ok(log);
    };
    let wire: LogWire = typed(section, "ipam.log")?;
    if let Some(text) = wire.level {
        log.level = Level::parse(&text).ok_or_else(|| {
            invalid(
                "ipam.log.level",
                &text,
                "must be one of off, error, warn, info, debug",
            )
        })?;
    }
    if let Some(file) = wire.file {
        if !file.starts_with('/') {
            return Err(invalid("ipam.log.file", &file, "must be an absolute path"));
        }
        log.file = Some(PathBuf::from(file));
    }
    Ok(log)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn log_settings_are_validated() {
        let log = |l: Value| match log_config(&json!({"name": "n", "ipam": {"log": l}})) {
            Ok(c) => format!("{} {:?}", c.level, c.file),
            Err(e) => format!("{}: {}", e.code(), e.msg()),
        };
        assert_eq!(log(Value::Null), "WARN None");
        assert_eq!(
            log(json!({"level": "debug", "file": "/l"})),
            r#"DEBUG Some("/l")"#
        );
        assert_eq!(
            log(json!({"level": "loud"})),
            r#"7: ipam.log.level: "loud": must be one of off, error, warn, info, debug"#
        );
        assert_eq!(
            log(json!({"file": "l"})),
            r#"7: ipam.log.file: "l": must be an absolute path"#
        );
        assert_eq!(
            log(json!({"level": 5})),
            "6: ipam.log.level: invalid type: integer `5`, expected a string"
        );
        assert_eq!(
            log(json!("debug")),
            r#"6: ipam.log: invalid type: string "debug", expected an object with `level` and `file`"#
        );
    }
}
