//! The refusal of a value, on the ground floor: every layer that checks input uses it, and it
//! uses nothing of the crate.

use std::fmt;

/// A value that was refused: which field, what value, and why.
///
/// ```
/// let err = ipam_core::ObjectName::new("a/b").unwrap_err();
/// assert_eq!(err.field(), "metadata.name");
/// assert!(err.to_string().starts_with(r#"metadata.name: "a/b": "#));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {value:?}: {reason}")]
pub struct ValidationError {
    field: String,
    value: String,
    reason: String,
}

impl ValidationError {
    /// A refusal of `value` in `field` (a path such as `spec.ips[1]`) because of `reason`.
    pub fn new(field: impl Into<String>, value: &str, reason: impl fmt::Display) -> Self {
        ValidationError {
            field: field.into(),
            value: value.to_owned(),
            reason: reason.to_string(),
        }
    }

    /// The field, as a path such as `spec.ips[1]`.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// The refused value, as written.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// Why it was refused.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The same refusal with the field path prefixed, e.g. `spec` + `ips[1]`.
    pub fn within(mut self, prefix: &str) -> Self {
        self.field = format!("{prefix}.{}", self.field);
        self
    }
}
