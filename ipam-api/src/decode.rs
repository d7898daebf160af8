//! Reading one pool or reservation document (`IPPool`, `ReservedIP`, `SpiderIPPool`,
//! `SpiderReservedIP`) into a validated ipam-core object, or the first refusal naming the
//! field and the value.
//!
//! The one reading of an object that `ipamctl apply` (each document of its manifests) and
//! the controller's admission webhook (the object of an AdmissionReview) both make, so that
//! kubectl and `ipamctl` are refused the same objects with the same words.
//!
//! ```
//! use ipam_api::decode::{decode_object, Decoded};
//! let doc = serde_json::json!({
//!     "apiVersion": "ipam.rs/v1alpha1", "kind": "IPPool",
//!     "metadata": {"name": "p"},
//!     "spec": {"subnet": "10.6.0.5/24", "ips": ["10.6.0.10"]}
//! });
//! let refused = decode_object(&doc).unwrap_err();
//! assert_eq!(refused.object.as_deref(), Some("IPPool \"p\""));
//! assert_eq!(refused.error.field(), "spec.subnet");
//! ```

use std::fmt;

use ipam_core::{IpPool, IpPoolSpec, ObjectName, ReservedIp, ReservedIpSpec, ValidationError};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::spiderpool::{
    API_VERSION as SPIDERPOOL_API_VERSION, KIND_POOL as SPIDER_POOL,
    KIND_RESERVED as SPIDER_RESERVED,
};
use crate::{API_VERSION, KIND_POOL, KIND_RESERVED};

/// A validated object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// An IPPool (from `IPPool` or `SpiderIPPool`).
    Pool(IpPool),
    /// A ReservedIP (from `ReservedIP` or `SpiderReservedIP`).
    Reserved(ReservedIp),
}

impl Decoded {
    /// The object's name.
    pub fn name(&self) -> &ObjectName {
        match self {
            Decoded::Pool(p) => p.name(),
            Decoded::Reserved(r) => r.name(),
        }
    }
}

/// Why a document is not a valid object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// `kind "name"`, once both could be read.
    pub object: Option<String>,
    /// The field, the value and the reason.
    pub error: ValidationError,
    /// What kind of mistake it is (for counting refusals by reason).
    pub kind: RefusalKind,
}

/// What kind of mistake a refusal is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusalKind {
    /// A value the field cannot take: address syntax, host bits, a type, a name.
    Invalid,
    /// A field the kind does not have.
    UnknownField,
    /// A Spiderpool field ipam-rs does not implement, set to something.
    Unimplemented,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.object {
            Some(o) => write!(f, "{o}: {}", self.error),
            None => self.error.fmt(f),
        }
    }
}

impl std::error::Error for Refusal {}

/// The fields of our IPPool spec, as `IpPoolSpec` names them. Checked here so that an
/// unknown field is refused with its own name rather than serde's generic message.
fn pool_fields() -> &'static [&'static str] {
    crate::fields::of::<IpPoolSpec>()
}

/// The fields of our ReservedIP spec.
fn reserved_fields() -> &'static [&'static str] {
    crate::fields::of::<ReservedIpSpec>()
}

/// What a document's `apiVersion` and `kind` make it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Pool { spiderpool: bool },
    Reserved,
}

fn target_of(api_version: &str, kind: &str) -> Result<Target, (&'static str, String)> {
    match (api_version, kind) {
        (API_VERSION, KIND_POOL) => Ok(Target::Pool { spiderpool: false }),
        (API_VERSION, KIND_RESERVED) | (SPIDERPOOL_API_VERSION, SPIDER_RESERVED) => {
            Ok(Target::Reserved)
        }
        (SPIDERPOOL_API_VERSION, SPIDER_POOL) => Ok(Target::Pool { spiderpool: true }),
        (_, KIND_POOL | KIND_RESERVED) => Err((
            "apiVersion",
            format!("kind {kind} is of apiVersion {API_VERSION}"),
        )),
        (_, SPIDER_POOL | SPIDER_RESERVED) => Err((
            "apiVersion",
            format!("kind {kind} is of apiVersion {SPIDERPOOL_API_VERSION}"),
        )),
        _ => Err((
            "kind",
            format!(
                "unknown kind; ipam-rs knows {KIND_POOL} and {KIND_RESERVED} \
                 ({API_VERSION}), {SPIDER_POOL} and {SPIDER_RESERVED} ({SPIDERPOOL_API_VERSION})"
            ),
        )),
    }
}

/// Validates one object document: `apiVersion` and `kind` (ours or Spiderpool's),
/// `metadata.name`, no unknown field at the top or in the spec, Spiderpool's unimplemented
/// fields only when they say nothing, each field of its type, and the object's own rules
/// (address syntax, host bits, ...). The stored objects are not looked at: overlaps and
/// changes are the engine's to judge.
pub fn decode_object(value: &Value) -> Result<Decoded, Refusal> {
    let Some(map) = value.as_object() else {
        return Err(invalid(
            None,
            "(document)",
            value,
            "expected an object with apiVersion, kind, metadata and spec",
        ));
    };
    let api_version = required_str(None, map, "apiVersion")?;
    let kind = required_str(None, map, "kind")?;
    let target = target_of(api_version, kind)
        .map_err(|(field, reason)| invalid(None, field, &map[field], reason))?;

    // The name first, so that every later message can say which object it is about.
    let metadata = match map.get("metadata") {
        Some(Value::Object(m)) => m,
        other => {
            return Err(invalid(
                None,
                "metadata",
                other.unwrap_or(&Value::Null),
                "is required: an object with a name",
            ))
        }
    };
    let name =
        required_str(None, metadata, "name").map_err(|e| rename_field(e, "metadata.name"))?;
    let label = format!("{kind} {name:?}");
    let object = Some(label.as_str());
    ObjectName::new(name).map_err(|e| wrap(object, e))?;

    // `status` is what `ipamctl get` prints and what the controller writes: accepted and
    // ignored, as kubectl ignores it on apply. Anything else at the top is a mistake worth
    // stopping for.
    for key in map.keys() {
        if !["apiVersion", "kind", "metadata", "spec", "status"].contains(&key.as_str()) {
            return Err(Refusal {
                kind: RefusalKind::UnknownField,
                ..invalid(
                    object,
                    key,
                    &map[key],
                    "unknown field; an object has apiVersion, kind, metadata, spec (and status, ignored)",
                )
            });
        }
    }
    let spec = match map.get("spec") {
        Some(Value::Object(s)) => s,
        other => {
            return Err(invalid(
                object,
                "spec",
                other.unwrap_or(&Value::Null),
                "is required: an object",
            ))
        }
    };

    match target {
        Target::Pool { spiderpool } => {
            let mut spec = spec.clone();
            if spiderpool {
                strip_spiderpool_fields(&label, &mut spec)?;
            }
            check_fields(&label, &spec, pool_fields(), KIND_POOL)?;
            let spec: IpPoolSpec = typed_spec(&label, spec)?;
            Ok(Decoded::Pool(
                IpPool::new(name, spec).map_err(|e| wrap(object, e))?,
            ))
        }
        Target::Reserved => {
            // A SpiderReservedIP's spec has exactly our fields (ips, ipVersion).
            check_fields(&label, spec, reserved_fields(), KIND_RESERVED)?;
            let spec: ReservedIpSpec = typed_spec(&label, spec.clone())?;
            Ok(Decoded::Reserved(
                ReservedIp::new(name, spec).map_err(|e| wrap(object, e))?,
            ))
        }
    }
}

/// Removes the Spiderpool-only fields of a SpiderIPPool spec
/// ([`crate::spiderpool::UNIMPLEMENTED`]) when they say nothing (`null`, `{}`, `[]`,
/// `false`, `0`), and refuses the first that says something, naming it: the rule of the
/// cluster's SpiderIPPool schema (`deploy/spiderpool-compat/`), so that `ipamctl apply` and
/// `kubectl apply` take the same manifests. Ignoring a filter such as `nodeName` would let
/// the pool serve Pods its operator meant to keep out; ignoring `disable: true` would hand
/// out addresses the operator switched off.
fn strip_spiderpool_fields(label: &str, spec: &mut Map<String, Value>) -> Result<(), Refusal> {
    crate::spiderpool::take_unimplemented(spec).map_err(|e| {
        let value: Value =
            serde_json::from_str(&e.value).unwrap_or_else(|_| Value::String(e.value.clone()));
        Refusal {
            kind: RefusalKind::Unimplemented,
            ..invalid(
                Some(label),
                &e.path(),
                &value,
                format!("not implemented by ipam-rs: {}", e.why),
            )
        }
    })
}

/// Refuses any spec field not in `known`, naming it.
fn check_fields(
    label: &str,
    spec: &Map<String, Value>,
    known: &[&str],
    kind: &str,
) -> Result<(), Refusal> {
    for (key, value) in spec {
        if !known.contains(&key.as_str()) {
            return Err(Refusal {
                kind: RefusalKind::UnknownField,
                ..invalid(
                    Some(label),
                    &format!("spec.{key}"),
                    value,
                    format!("unknown field; the spec of {kind} has {}", known.join(", ")),
                )
            });
        }
    }
    Ok(())
}

/// Deserializes a spec, naming the field of a wrong type (`spec.ips[1]`).
fn typed_spec<T: DeserializeOwned>(label: &str, spec: Map<String, Value>) -> Result<T, Refusal> {
    let spec = Value::Object(spec);
    serde_path_to_error::deserialize(&spec).map_err(|e| {
        let mut field = String::from("spec");
        let mut at = Some(&spec);
        for segment in e.path().iter() {
            match segment {
                serde_path_to_error::Segment::Seq { index } => {
                    field.push_str(&format!("[{index}]"));
                    at = at.and_then(|v| v.get(index));
                }
                serde_path_to_error::Segment::Map { key } => {
                    field.push('.');
                    field.push_str(key);
                    at = at.and_then(|v| v.get(key));
                }
                other => {
                    field.push_str(&format!(".{other}"));
                    at = None;
                }
            }
        }
        invalid(Some(label), &field, at.unwrap_or(&Value::Null), e.inner())
    })
}

fn required_str<'v>(
    object: Option<&str>,
    map: &'v Map<String, Value>,
    field: &str,
) -> Result<&'v str, Refusal> {
    match map.get(field) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(Value::String(_)) | None | Some(Value::Null) => Err(invalid(
            object,
            field,
            &Value::String(String::new()),
            "is required",
        )),
        Some(other) => Err(invalid(object, field, other, "expected a string")),
    }
}

/// Renames the field of a refusal (for fields read through a nested map).
fn rename_field(e: Refusal, field: &str) -> Refusal {
    Refusal {
        error: ValidationError::new(field, e.error.value(), e.error.reason()),
        ..e
    }
}

/// A refusal of `value` in `field`: strings are quoted as written, other values as JSON.
fn invalid(object: Option<&str>, field: &str, value: &Value, reason: impl fmt::Display) -> Refusal {
    let text = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    wrap(object, ValidationError::new(field, &text, reason))
}

fn wrap(object: Option<&str>, error: ValidationError) -> Refusal {
    Refusal {
        object: object.map(str::to_owned),
        error,
        kind: RefusalKind::Invalid,
    }
}
