//! Validated names: of objects (pools, reservations, networks) and of owners.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::ValidationError;

/// The name of an IPPool or a ReservedIP: 1 to 253 characters of `[A-Za-z0-9_.-]`, starting
/// with a letter or digit.
///
/// The character set is that of CNI network names, because a network's inline pools are named
/// after it; every Kubernetes object name fits in it.
///
/// ```
/// use ipam_core::ObjectName;
/// assert!(ObjectName::new("test-ippool").is_ok());
/// assert!(ObjectName::new("bad/name").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ObjectName(String);

impl ObjectName {
    /// Validates a name; the error names the field `metadata.name`.
    pub fn new(name: impl Into<String>) -> Result<ObjectName, ValidationError> {
        let name = name.into();
        let ok = (1..=253).contains(&name.len())
            && name.as_bytes()[0].is_ascii_alphanumeric()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
        if ok {
            Ok(ObjectName(name))
        } else {
            Err(ValidationError::new(
                "metadata.name",
                &name,
                "must be 1-253 characters of letters, digits, '-', '.' or '_', starting with a letter or digit",
            ))
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ObjectName {
    type Error = ValidationError;
    fn try_from(s: String) -> Result<Self, ValidationError> {
        ObjectName::new(s)
    }
}

impl From<ObjectName> for String {
    fn from(n: ObjectName) -> String {
        n.0
    }
}

impl fmt::Display for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// Who holds an address: a container's interface, `(containerID, ifname)`.
///
/// The container ID is 1 to 256 characters of `[A-Za-z0-9_.-]` (the CNI contract); the
/// interface name follows the kernel's rules (1 to 15 bytes, no `/`, `:` or white space,
/// not `.` nor `..`).
///
/// ```
/// use ipam_core::Owner;
/// let owner = Owner::new("5f1c0e", "eth0").unwrap();
/// assert_eq!(owner.to_string(), "5f1c0e/eth0");
/// assert!(Owner::new("../etc", "eth0").is_err());
/// assert!(Owner::new("..", "eth0").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "(String, String)", into = "(String, String)")]
pub struct Owner {
    container_id: String,
    ifname: String,
}

impl Owner {
    /// Validates both parts; errors name the field `containerID` or `ifname`.
    pub fn new(
        container_id: impl Into<String>,
        ifname: impl Into<String>,
    ) -> Result<Owner, ValidationError> {
        let (container_id, ifname) = (container_id.into(), ifname.into());
        // `.` and `..` fit the charset but name directories, not containers.
        let id_ok = (1..=256).contains(&container_id.len())
            && container_id != "."
            && container_id != ".."
            && container_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
        if !id_ok {
            return Err(ValidationError::new(
                "containerID",
                &container_id,
                "must be 1-256 characters of letters, digits, '-', '.' or '_', and not '.' or '..'",
            ));
        }
        let if_ok = (1..=15).contains(&ifname.len())
            && ifname != "."
            && ifname != ".."
            && !ifname
                .chars()
                .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
        if !if_ok {
            return Err(ValidationError::new(
                "ifname",
                &ifname,
                "must be 1-15 bytes without '/', ':' or white space, and not '.' or '..'",
            ));
        }
        Ok(Owner {
            container_id,
            ifname,
        })
    }

    /// The container ID.
    pub fn container_id(&self) -> &str {
        &self.container_id
    }

    /// The interface name inside the container.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }
}

impl TryFrom<(String, String)> for Owner {
    type Error = ValidationError;
    fn try_from((c, i): (String, String)) -> Result<Self, ValidationError> {
        Owner::new(c, i)
    }
}

impl From<Owner> for (String, String) {
    fn from(o: Owner) -> Self {
        (o.container_id, o.ifname)
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.container_id, self.ifname)
    }
}

impl fmt::Debug for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Owner({self})")
    }
}
