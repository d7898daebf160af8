//! Validated names: of objects (pools, reservations, networks) and of owners.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::validation::ValidationError;

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

/// Checks `value` of `field` as Kubernetes checks a namespace's name: an RFC 1123 label, at
/// most 63 characters of lower-case letters, digits and `-`, starting and ending with a letter
/// or digit. Kubernetes' own wording, so that the refusal reads as kubectl's would.
///
/// ```
/// use ipam_core::check_dns_label;
/// assert!(check_dns_label("K8S_POD_NAMESPACE", "kube-system").is_ok());
/// let err = check_dns_label("K8S_POD_NAMESPACE", "a/b").unwrap_err();
/// assert!(err.to_string().starts_with(r#"K8S_POD_NAMESPACE: "a/b": a lowercase RFC 1123 label"#));
/// ```
pub fn check_dns_label(field: &str, value: &str) -> Result<(), ValidationError> {
    if value.len() > 63 {
        return Err(ValidationError::new(
            field,
            value,
            format!(
                "must be no more than 63 characters (it has {})",
                value.len()
            ),
        ));
    }
    if !is_dns_label(value) {
        return Err(ValidationError::new(
            field,
            value,
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', \
             and must start and end with an alphanumeric character",
        ));
    }
    Ok(())
}

/// Checks `value` of `field` as Kubernetes checks the name of a Pod (and of most objects): an
/// RFC 1123 subdomain, at most 253 characters, labels of [`check_dns_label`]'s characters
/// joined by `.`.
///
/// ```
/// use ipam_core::check_dns_subdomain;
/// assert!(check_dns_subdomain("K8S_POD_NAME", "web-0.v2").is_ok());
/// assert!(check_dns_subdomain("K8S_POD_NAME", "web?x=1").is_err());
/// ```
pub fn check_dns_subdomain(field: &str, value: &str) -> Result<(), ValidationError> {
    if value.len() > 253 {
        return Err(ValidationError::new(
            field,
            value,
            format!(
                "must be no more than 253 characters (it has {})",
                value.len()
            ),
        ));
    }
    // Kubernetes limits only the whole (IsDNS1123Subdomain), not each label, to 63.
    if value.is_empty() || !value.split('.').all(is_dns_label) {
        return Err(ValidationError::new(
            field,
            value,
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, \
             '-' or '.', and must start and end with an alphanumeric character",
        ));
    }
    Ok(())
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, whatever its length.
fn is_dns_label(text: &str) -> bool {
    let b = text.as_bytes();
    let inner = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty()
        && inner(&b[0])
        && inner(&b[b.len() - 1])
        && b.iter().all(|c| inner(c) || *c == b'-')
}

#[cfg(test)]
mod kubernetes_names {
    use super::*;

    /// The names Kubernetes gives namespaces and Pods pass; anything that could change a
    /// request's path or query (`/`, `?`, `#`, `%`, a space) or that Kubernetes would refuse
    /// fails, naming the field and the value.
    #[test]
    fn namespace_and_pod_names_follow_kubernetes() {
        for ok in ["default", "kube-system", "a", "0ns", &"n".repeat(63)] {
            assert_eq!(check_dns_label("ns", ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "A",
            "a.b",
            "a/b",
            "a b",
            "a?b",
            &"n".repeat(64),
        ] {
            let err = check_dns_label("ns", bad).unwrap_err();
            assert_eq!((err.field(), err.value()), ("ns", bad));
        }
        let long_label = format!("{}.b", "a".repeat(100));
        for ok in ["web", "web-0", "web.v2", "0", &long_label, &"p".repeat(253)] {
            assert_eq!(check_dns_subdomain("pod", ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "p-good?x=1",
            "p#frag",
            "p good",
            "p/../x",
            "p%2F",
            "Web",
            "a..b",
            ".a",
            "a.",
            "a_b",
            &"p".repeat(254),
        ] {
            let err = check_dns_subdomain("pod", bad).unwrap_err();
            assert_eq!((err.field(), err.value()), ("pod", bad));
        }
        assert_eq!(
            check_dns_subdomain("K8S_POD_NAME", &"p".repeat(254))
                .unwrap_err()
                .reason(),
            "must be no more than 253 characters (it has 254)"
        );
    }
}
