//! Reading a typed field and wording a refusal, shared by every part of the configuration:
//! a field of the wrong type is code 6 and a value that does not do is code 7, and either
//! names the field's path (`ipam.ranges[0][1].subnet`) and the value as given.

use std::net::IpAddr;

use ipam_core::{parse_addr, AddrErrorKind};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::cni::error::{CniError, Code};

/// Deserializes `value` (found at `prefix`) into `T`; a wrong type is code 6 and names the
/// field's path.
pub(super) fn typed<T: DeserializeOwned>(value: &Value, prefix: &str) -> Result<T, CniError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = match (prefix.is_empty(), path.as_str()) {
            (true, p) => p.to_owned(),
            (false, ".") => prefix.to_owned(),
            (false, p) => format!("{prefix}.{p}"),
        };
        CniError::new(Code::Decode, format!("{field}: {}", e.inner()))
    })
}

/// A value refused: `FIELD: "VALUE": REASON` (code 7).
pub(super) fn invalid(field: &str, value: &str, reason: impl std::fmt::Display) -> CniError {
    CniError::new(Code::InvalidConfig, format!("{field}: {value:?}: {reason}"))
}

/// A field missing: `FIELD: is required WHY` (code 7).
pub(super) fn required(field: &str, why: &str) -> CniError {
    CniError::new(Code::InvalidConfig, format!("{field}: is required{why}"))
}

/// A requested address: bare, or with a prefix length as host-local accepts
/// (`10.6.0.5/16`; the length is checked but otherwise ignored).
pub(super) fn requested_addr(field: &str, text: &str) -> Result<IpAddr, CniError> {
    let (addr_text, prefix) = match text.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (text, None),
    };
    let addr = parse_addr(addr_text).map_err(|e| invalid(field, text, e.kind()))?;
    if let Some(p) = prefix {
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        if !p.parse::<u8>().is_ok_and(|n| n <= bits) || p.starts_with('+') {
            return Err(invalid(field, text, AddrErrorKind::BadPrefix));
        }
    }
    Ok(addr)
}
