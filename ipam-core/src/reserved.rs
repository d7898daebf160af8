//! ReservedIP: addresses that no pool of the store ever hands out.

use serde::{Deserialize, Serialize};

use crate::addr::{Family, IpRange};
use crate::name::ObjectName;
use crate::set::IntervalSet;
use crate::validation::ValidationError;

/// A ReservedIP's `spec` as written by a person: the wire form, not yet validated.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReservedIpSpec {
    /// The reserved addresses, in any address form.
    #[serde(default)]
    pub ips: Vec<String>,
    /// 4 or 6; inferred from `ips` when absent.
    #[serde(default, rename = "ipVersion", skip_serializing_if = "Option::is_none")]
    pub ip_version: Option<u8>,
}

/// A validated ReservedIP: one family, any number of address forms.
///
/// ```
/// use ipam_core::{ReservedIp, ReservedIpSpec};
/// let r = ReservedIp::new("test-reservedip", ReservedIpSpec {
///     ips: vec!["10.6.168.131-10.6.168.132".into()],
///     ip_version: None,
/// }).unwrap();
/// assert_eq!(r.addresses().len(), 2);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReservedIp {
    name: ObjectName,
    spec: ReservedIpSpec,
    family: Option<Family>,
    addresses: IntervalSet,
}

impl ReservedIp {
    /// Validates `spec` for a ReservedIP called `name`.
    ///
    /// Every entry must be of one family (that of `ipVersion` when given): a reservation of
    /// both families is written as two objects, as in Spiderpool.
    pub fn new(name: &str, spec: ReservedIpSpec) -> Result<ReservedIp, ValidationError> {
        let name = ObjectName::new(name)?;
        let mut family = match spec.ip_version {
            None => None,
            Some(v) => Some(Family::from_version(v).ok_or_else(|| {
                ValidationError::new("spec.ipVersion", &v.to_string(), "must be 4 or 6")
            })?),
        };
        let mut ranges = Vec::with_capacity(spec.ips.len());
        for (i, text) in spec.ips.iter().enumerate() {
            let field = format!("spec.ips[{i}]");
            let range =
                IpRange::parse(text).map_err(|e| ValidationError::new(&field, text, e.kind()))?;
            match family {
                Some(f) if f != range.family() => {
                    let why = if spec.ip_version.is_some() {
                        format!(
                            "is {}, but spec.ipVersion is {}",
                            range.family(),
                            f.version()
                        )
                    } else {
                        format!(
                            "is {} while earlier entries are {f}; use one ReservedIP per family",
                            range.family()
                        )
                    };
                    return Err(ValidationError::new(&field, text, why));
                }
                _ => family = Some(range.family()),
            }
            ranges.push(range);
        }
        Ok(ReservedIp {
            name,
            addresses: IntervalSet::from_ranges(&ranges),
            spec,
            family,
        })
    }

    /// The ReservedIP's name.
    pub fn name(&self) -> &ObjectName {
        &self.name
    }

    /// The spec as it was written.
    pub fn spec(&self) -> &ReservedIpSpec {
        &self.spec
    }

    /// The family, unless the reservation is empty and has no `ipVersion`.
    pub fn family(&self) -> Option<Family> {
        self.family
    }

    /// The reserved addresses on the family's number line.
    pub fn addresses(&self) -> &IntervalSet {
        &self.addresses
    }
}

/// The union of reserved addresses, one interval set per family.
///
/// The engine keeps this summary as one stored record, rewritten whenever a ReservedIP
/// changes, so that an allocation reads one small record instead of every ReservedIP.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FamilySets {
    /// IPv4 addresses.
    pub v4: IntervalSet,
    /// IPv6 addresses.
    pub v6: IntervalSet,
}

impl FamilySets {
    /// The set of one family.
    pub fn get(&self, family: Family) -> &IntervalSet {
        match family {
            Family::V4 => &self.v4,
            Family::V6 => &self.v6,
        }
    }

    /// The union of all the given reservations.
    pub fn union_of<'a>(reservations: impl IntoIterator<Item = &'a ReservedIp>) -> FamilySets {
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for r in reservations {
            match r.family() {
                Some(Family::V4) => v4.extend_from_slice(r.addresses().intervals()),
                Some(Family::V6) => v6.extend_from_slice(r.addresses().intervals()),
                None => {}
            }
        }
        FamilySets {
            v4: IntervalSet::from_intervals(v4),
            v6: IntervalSet::from_intervals(v6),
        }
    }

    /// The union of ranges of both families.
    pub fn from_ranges<'a>(ranges: impl IntoIterator<Item = &'a IpRange>) -> FamilySets {
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for r in ranges {
            match r.family() {
                Family::V4 => v4.push(r.bounds()),
                Family::V6 => v6.push(r.bounds()),
            }
        }
        FamilySets {
            v4: IntervalSet::from_intervals(v4),
            v6: IntervalSet::from_intervals(v6),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(ips: &[&str], version: Option<u8>, expect: &str) {
        let spec = ReservedIpSpec {
            ips: ips.iter().map(|s| s.to_string()).collect(),
            ip_version: version,
        };
        let got = match ReservedIp::new("r", spec) {
            Ok(r) => format!("{:?} {}", r.family(), r.addresses().len()),
            Err(e) => format!("error: {e}"),
        };
        assert_eq!(got, expect);
    }

    #[test]
    fn reservations_validate_and_count() {
        check(&["10.6.168.131-10.6.168.132"], None, "Some(V4) 2");
        check(&["10.6.0.0/16", "10.6.1.1"], Some(4), "Some(V4) 65536");
        check(&["fd00::/64"], None, "Some(V6) 18446744073709551616");
        check(&[], None, "None 0");
        check(&[], Some(6), "Some(V6) 0");
        check(
            &["10.6.0.1", "fd00::1"],
            None,
            r#"error: spec.ips[1]: "fd00::1": is IPv6 while earlier entries are IPv4; use one ReservedIP per family"#,
        );
        check(
            &["fd00::1"],
            Some(4),
            r#"error: spec.ips[0]: "fd00::1": is IPv6, but spec.ipVersion is 4"#,
        );
        check(
            &["10.6.0.1/16"],
            None,
            r#"error: spec.ips[0]: "10.6.0.1/16": host bits are set; the network is 10.6.0.0/16"#,
        );
    }
}
