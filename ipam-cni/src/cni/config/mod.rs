//! The network configuration on stdin: decoding (code 6 for bytes that are not JSON or a
//! field of the wrong type) and validation (code 7, naming the field and the value).
//!
//! Validation never touches the store, so a refused configuration leaves it as it was.
//!
//! This module is the entry: it decodes stdin ([`decode_stdin`]) and reads `cniVersion`
//! ([`version_of`]). Each part of the configuration is read by a module of its own:
//! - `net`: [`NetConf`], what every command but VERSION needs (the network's `name`,
//!   `ipam.dataDir`, `ipam.store`);
//! - `store_choice`: `ipam.store`, the backend and where it is;
//! - `logging`: `ipam.log` ([`log_config`]);
//! - `plan`: [`Plan`], what ADD, CHECK and STATUS allocate: the slots, `ipam.ippools`,
//!   `ipam.reserved` and the requested addresses;
//! - `ranges`: `ipam.ranges`, host-local's range sets, as inline pools;
//! - `routes`: `ipam.routes` and `ipam.dns`, as they go into the result;
//! - `check_gc`: CHECK's `prevResult` and GC's attachments to keep;
//! - `fields`: reading a typed field and wording a refusal, the same for every part.

mod check_gc;
mod fields;
mod logging;
mod net;
mod plan;
mod ranges;
mod routes;
mod store_choice;

use serde_json::Value;

use super::error::{CniError, Code};
use super::version::CniVersion;

pub use check_gc::{prev_result_addresses, valid_attachments};
pub use logging::log_config;
pub use net::{agent_socket, AgentSocket, NetConf, DEFAULT_AGENT_SOCKET};
pub use plan::{Plan, SlotOrigin, SlotPlan};

/// The most stdin this plugin reads. A network configuration with a `prevResult` is a few
/// KiB; anything near this is a mistake or an attack, refused before it is parsed.
pub const MAX_STDIN_BYTES: usize = 1 << 20;

/// Parses stdin as a JSON object.
///
/// ```
/// use ipam_cni::cni::config::decode_stdin;
/// assert!(decode_stdin(br#"{"cniVersion": "1.1.0"}"#).is_ok());
/// assert_eq!(decode_stdin(b"{").unwrap_err().code().number(), 6);
/// ```
pub fn decode_stdin(bytes: &[u8]) -> Result<Value, CniError> {
    if bytes.len() > MAX_STDIN_BYTES {
        return Err(CniError::new(
            Code::Decode,
            format!(
                "stdin is larger than {MAX_STDIN_BYTES} bytes; expected one network configuration"
            ),
        ));
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(CniError::new(
            Code::Decode,
            "stdin is empty; expected the network configuration as a JSON object",
        ));
    }
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| CniError::new(Code::Decode, format!("stdin is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(CniError::new(
            Code::Decode,
            "stdin: expected the network configuration as a JSON object",
        ));
    }
    Ok(value)
}

/// The request's `cniVersion`: code 1 when missing or not supported.
pub fn version_of(conf: &Value) -> Result<CniVersion, CniError> {
    let supported = || {
        CniVersion::ALL
            .iter()
            .map(|v| v.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match conf.get("cniVersion") {
        None | Some(Value::Null) => Err(CniError::new(
            Code::IncompatibleVersion,
            format!(
                "cniVersion is missing; this plugin supports {}",
                supported()
            ),
        )),
        Some(Value::String(s)) => CniVersion::parse(s).ok_or_else(|| {
            CniError::new(
                Code::IncompatibleVersion,
                format!(
                    "cniVersion: {s:?}: not supported; this plugin supports {}",
                    supported()
                ),
            )
        }),
        Some(other) => Err(CniError::new(
            Code::Decode,
            format!("cniVersion: expected a string, found {other}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stdin_and_version_are_checked_first() {
        let code = |b: &[u8]| {
            decode_stdin(b)
                .map(|_| 0)
                .unwrap_or_else(|e| e.code().number())
        };
        assert_eq!(code(b"{}"), 0);
        assert_eq!(code(b""), 6);
        assert_eq!(code(b"[1]"), 6);
        assert_eq!(code(b"{\"a\":"), 6);
        assert_eq!(code(&vec![b' '; MAX_STDIN_BYTES + 1]), 6);
        let deep = "[".repeat(10_000);
        assert_eq!(code(deep.as_bytes()), 6);
        let v = |c: Value| {
            version_of(&c)
                .map(|v| v.to_string())
                .unwrap_or_else(|e| format!("{}: {}", e.code(), e.msg()))
        };
        assert_eq!(v(json!({"cniVersion": "0.4.0"})), "0.4.0");
        assert_eq!(
            v(json!({"cniVersion": "0.2.0"})),
            r#"1: cniVersion: "0.2.0": not supported; this plugin supports 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0"#
        );
        assert_eq!(
            v(json!({})),
            "1: cniVersion is missing; this plugin supports 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0"
        );
        assert_eq!(
            v(json!({"cniVersion": 1})),
            "6: cniVersion: expected a string, found 1"
        );
    }
}
