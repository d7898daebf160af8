//! IPPool: a subnet and the addresses of it that may be handed out.

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::addr::{parse_addr, parse_cidr, to_u128, Family, IpRange};
use crate::name::ObjectName;
use crate::set::IntervalSet;
use crate::validation::ValidationError;

/// The largest pool supported: an IPv6 /64.
pub const MAX_POOL_SIZE: u128 = 1 << 64;

/// An IPPool's `spec` as written by a person: the wire form, not yet validated.
///
/// Field names follow Spiderpool's (`excludeIPs`, `ipVersion`), so a SpiderIPPool's spec
/// reads as is.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IpPoolSpec {
    /// The subnet, a CIDR (required).
    pub subnet: String,
    /// The addresses that may be handed out, in any address form (required).
    #[serde(default)]
    pub ips: Vec<String>,
    /// Addresses of `ips` never handed out.
    #[serde(default, rename = "excludeIPs", skip_serializing_if = "Vec::is_empty")]
    pub exclude_ips: Vec<String>,
    /// The gateway, inside the subnet; never handed out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Routes to put in results.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteSpec>,
    /// 4 or 6; inferred from the subnet when absent.
    #[serde(default, rename = "ipVersion", skip_serializing_if = "Option::is_none")]
    pub ip_version: Option<u8>,
    /// Whether the pool is a default pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<bool>,
    /// Whether a StatefulSet Pod's address from this pool is kept for the Pod across its
    /// DEL and next ADD (ipam-rs, not Spiderpool; default true, as the network's
    /// `keepStatefulSetAddresses`, which switches it off for every pool).
    #[serde(
        default,
        rename = "keepStatefulSetAddresses",
        skip_serializing_if = "Option::is_none"
    )]
    pub keep_statefulset_addresses: Option<bool>,
}

/// A route of a pool's spec, as written.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// The destination, a CIDR.
    pub dst: String,
    /// The next hop; the pool's gateway when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<String>,
}

/// A validated route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The destination.
    pub dst: IpNet,
    /// The next hop, if one is set on the route itself.
    pub gw: Option<IpAddr>,
}

/// A validated IPPool. No invalid pool can be built; fields are read through accessors.
///
/// ```
/// use ipam_core::{IpPool, IpPoolSpec};
/// let pool = IpPool::new("test-ippool", IpPoolSpec {
///     subnet: "10.6.0.0/16".into(),
///     ips: vec!["10.6.168.131-10.6.168.133".into()],
///     ..Default::default()
/// }).unwrap();
/// assert_eq!(pool.total(), 3);
///
/// let err = IpPool::new("p", IpPoolSpec {
///     subnet: "10.6.0.0/16".into(),
///     ips: vec!["10.7.0.1".into()],
///     ..Default::default()
/// }).unwrap_err();
/// assert_eq!(err.to_string(), r#"spec.ips[0]: "10.7.0.1": is outside the subnet 10.6.0.0/16"#);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpPool {
    /// Shared: a pool is read on every allocation and copied into each attempt's view.
    inner: Arc<PoolInner>,
    state: PoolState,
}

/// Whether a pool hands out addresses, or is held still while a change that must see every
/// holder of it is made.
///
/// A change that depends on the pool's holders (deleting it, moving it to another subnet)
/// first marks the pool, then looks at its holders, then makes the change. An allocation
/// never takes from a marked pool, and after its own write it reads its pools again and
/// gives back what it took from one that was marked, changed or deleted meanwhile. So a
/// holder the change did not see cannot remain: either its allocation wrote before the mark
/// and the change sees it, or it read the mark (or what followed) and gave the address back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PoolState {
    /// It hands out addresses.
    #[default]
    Active,
    /// `ipamctl delete` is releasing its holders before deleting it; it hands out nothing.
    /// Deleting it again goes on where a stopped deletion left off.
    Deleting,
    /// An apply that moves it to another subnet is checking that it holds nothing; it hands
    /// out nothing until the apply is done (an apply that stopped: apply it again).
    Changing,
}

impl PoolState {
    /// Whether the pool hands out addresses.
    pub fn is_active(&self) -> bool {
        *self == PoolState::Active
    }
}

#[derive(Debug, PartialEq, Eq)]
struct PoolInner {
    name: ObjectName,
    spec: IpPoolSpec,
    family: Family,
    subnet: IpNet,
    ips: IntervalSet,
    excluded: IntervalSet,
    gateway: Option<IpAddr>,
    routes: Vec<Route>,
    capacity: IntervalSet,
}

impl IpPool {
    /// Validates `spec` for a pool called `name`. Errors name the field (`spec.ips[2]`)
    /// and quote the value.
    pub fn new(name: &str, spec: IpPoolSpec) -> Result<IpPool, ValidationError> {
        let name = ObjectName::new(name)?;
        let subnet = parse_cidr(&spec.subnet)
            .map_err(|e| ValidationError::new("spec.subnet", &spec.subnet, e.kind()))?;
        let family = Family::of(subnet.addr());
        if let Some(v) = spec.ip_version {
            match Family::from_version(v) {
                None => {
                    return Err(ValidationError::new(
                        "spec.ipVersion",
                        &v.to_string(),
                        "must be 4 or 6",
                    ))
                }
                Some(f) if f != family => {
                    return Err(ValidationError::new(
                        "spec.ipVersion",
                        &v.to_string(),
                        format!("does not match the subnet {subnet}, which is {family}"),
                    ))
                }
                Some(_) => {}
            }
        }
        if spec.ips.is_empty() {
            return Err(ValidationError::new(
                "spec.ips",
                "",
                "is required: list the addresses of the subnet the pool may hand out",
            ));
        }
        let ips = ranges_in_subnet("spec.ips", &spec.ips, &subnet)?;
        let excluded = ranges_in_subnet("spec.excludeIPs", &spec.exclude_ips, &subnet)?;
        let gateway = match &spec.gateway {
            None => None,
            Some(text) => {
                let gw = parse_addr(text)
                    .map_err(|e| ValidationError::new("spec.gateway", text, e.kind()))?;
                if !subnet.contains(&gw) {
                    return Err(ValidationError::new(
                        "spec.gateway",
                        text,
                        format!("is outside the subnet {subnet}"),
                    ));
                }
                Some(gw)
            }
        };
        let routes = validate_routes(&spec.routes, family, gateway)?;

        let mut not_allocatable = excluded.clone();
        if let Some(gw) = gateway {
            not_allocatable.insert(to_u128(gw), to_u128(gw));
        }
        if family == Family::V4 && subnet.prefix_len() <= 30 {
            for edge in [subnet.network(), subnet.broadcast()] {
                not_allocatable.insert(to_u128(edge), to_u128(edge));
            }
        }
        let capacity = ips.difference(&not_allocatable);
        if ips.len() > MAX_POOL_SIZE {
            return Err(ValidationError::new(
                "spec.ips",
                &spec.ips.join(","),
                format!(
                    "lists {} addresses; a pool holds at most 2^64 (an IPv6 /64)",
                    ips.len()
                ),
            ));
        }
        Ok(IpPool {
            state: PoolState::Active,
            inner: Arc::new(PoolInner {
                name,
                spec,
                family,
                subnet,
                ips,
                excluded,
                gateway,
                routes,
                capacity,
            }),
        })
    }

    /// Its state: whether it hands out addresses (see [`PoolState`]).
    pub fn state(&self) -> PoolState {
        self.state
    }

    /// The same pool in `state`.
    pub fn with_state(mut self, state: PoolState) -> IpPool {
        self.state = state;
        self
    }

    /// The pool's name.
    pub fn name(&self) -> &ObjectName {
        &self.inner.name
    }

    /// The spec as it was written.
    pub fn spec(&self) -> &IpPoolSpec {
        &self.inner.spec
    }

    /// The family of every address of the pool.
    pub fn family(&self) -> Family {
        self.inner.family
    }

    /// The subnet.
    pub fn subnet(&self) -> IpNet {
        self.inner.subnet
    }

    /// The addresses of `spec.ips`.
    pub fn ips(&self) -> &IntervalSet {
        &self.inner.ips
    }

    /// The addresses of `spec.excludeIPs`.
    pub fn excluded(&self) -> &IntervalSet {
        &self.inner.excluded
    }

    /// The gateway, if any.
    pub fn gateway(&self) -> Option<IpAddr> {
        self.inner.gateway
    }

    /// The routes.
    pub fn routes(&self) -> &[Route] {
        &self.inner.routes
    }

    /// Whether the pool is marked default.
    pub fn is_default(&self) -> bool {
        self.inner.spec.default.unwrap_or(false)
    }

    /// Whether a StatefulSet Pod's address from this pool is kept for the Pod between its
    /// DEL and next ADD (`keepStatefulSetAddresses`, default true).
    pub fn keeps_statefulset_addresses(&self) -> bool {
        self.inner.spec.keep_statefulset_addresses.unwrap_or(true)
    }

    /// The addresses the pool may ever hand out: `ips` minus `excludeIPs`, the gateway and,
    /// for IPv4 subnets of /30 or wider, the network and broadcast addresses.
    pub fn capacity(&self) -> &IntervalSet {
        &self.inner.capacity
    }

    /// `totalIPCount`: the size of [`IpPool::capacity`].
    pub fn total(&self) -> u128 {
        self.inner.capacity.len()
    }

    /// Whether `addr` is of the pool's family and in its subnet.
    pub fn in_subnet(&self, addr: IpAddr) -> bool {
        self.inner.subnet.contains(&addr)
    }

    /// Which rule keeps `addr` (listed in `ips`) out of the capacity, if any.
    pub fn exclusion_rule(&self, addr: IpAddr) -> Option<&'static str> {
        let v = to_u128(addr);
        if Family::of(addr) != self.inner.family
            || !self.inner.ips.contains(v)
            || self.inner.capacity.contains(v)
        {
            return None;
        }
        Some(if self.inner.excluded.contains(v) {
            "spec.excludeIPs"
        } else if Some(addr) == self.inner.gateway {
            "spec.gateway"
        } else if addr == self.inner.subnet.network() {
            "network address of the subnet"
        } else {
            "broadcast address of the subnet"
        })
    }
}

fn ranges_in_subnet(
    field: &str,
    texts: &[String],
    subnet: &IpNet,
) -> Result<IntervalSet, ValidationError> {
    let mut ranges = Vec::with_capacity(texts.len());
    for (i, text) in texts.iter().enumerate() {
        let field = format!("{field}[{i}]");
        let range =
            IpRange::parse(text).map_err(|e| ValidationError::new(&field, text, e.kind()))?;
        if !range.within(subnet) {
            return Err(ValidationError::new(
                &field,
                text,
                format!("is outside the subnet {subnet}"),
            ));
        }
        ranges.push(range);
    }
    Ok(IntervalSet::from_ranges(&ranges))
}

fn validate_routes(
    specs: &[RouteSpec],
    family: Family,
    gateway: Option<IpAddr>,
) -> Result<Vec<Route>, ValidationError> {
    let mut routes: Vec<Route> = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        let field = format!("spec.routes[{i}]");
        let dst = parse_cidr(&spec.dst)
            .map_err(|e| ValidationError::new(format!("{field}.dst"), &spec.dst, e.kind()))?;
        if Family::of(dst.addr()) != family {
            return Err(ValidationError::new(
                format!("{field}.dst"),
                &spec.dst,
                format!("is not {family}, the pool's family"),
            ));
        }
        if routes.iter().any(|r| r.dst == dst) {
            return Err(ValidationError::new(
                format!("{field}.dst"),
                &spec.dst,
                "is the destination of an earlier route",
            ));
        }
        let gw = match &spec.gw {
            None => None,
            Some(text) => {
                let gw = parse_addr(text)
                    .map_err(|e| ValidationError::new(format!("{field}.gw"), text, e.kind()))?;
                if Family::of(gw) != family {
                    return Err(ValidationError::new(
                        format!("{field}.gw"),
                        text,
                        format!("is not {family}, the pool's family"),
                    ));
                }
                Some(gw)
            }
        };
        if dst.prefix_len() == 0 && gw.is_none() && gateway.is_none() {
            return Err(ValidationError::new(
                format!("{field}.dst"),
                &spec.dst,
                "a default route needs a gateway: set the route's gw or spec.gateway",
            ));
        }
        routes.push(Route { dst, gw });
    }
    Ok(routes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(subnet: &str, ips: &[&str]) -> IpPoolSpec {
        IpPoolSpec {
            subnet: subnet.into(),
            ips: ips.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    /// Validates `spec` and renders the outcome: the counted total, or the error.
    fn check(spec: IpPoolSpec, expect: &str) {
        let got = match IpPool::new("p", spec.clone()) {
            Ok(p) => format!("total {}", p.total()),
            Err(e) => format!("error: {e}"),
        };
        assert_eq!(got, expect, "spec {spec:?}");
    }

    #[test]
    fn counting_follows_the_contract() {
        check(
            spec("10.6.0.0/16", &["10.6.168.131-10.6.168.133"]),
            "total 3",
        );
        // network and broadcast leave an IPv4 /24 ...
        check(spec("10.6.0.0/24", &["10.6.0.0/24"]), "total 254");
        // ... and the gateway too
        check(
            IpPoolSpec {
                gateway: Some("10.6.0.1".into()),
                exclude_ips: vec!["10.6.0.10-10.6.0.19".into()],
                ..spec("10.6.0.0/24", &["10.6.0.0/24"])
            },
            "total 243",
        );
        // /31 and /32 keep every address; IPv6 has no broadcast
        check(spec("10.6.0.0/31", &["10.6.0.0/31"]), "total 2");
        check(spec("10.6.0.5/32", &["10.6.0.5"]), "total 1");
        check(spec("10.6.0.0/30", &["10.6.0.0/30"]), "total 2");
        check(spec("fd00::/120", &["fd00::/120"]), "total 256");
        check(
            spec("fd00::/64", &["fd00::/64"]),
            "total 18446744073709551616",
        );
        // overlapping entries count once
        check(
            spec("10.6.0.0/24", &["10.6.0.1-10.6.0.10", "10.6.0.5-10.6.0.12"]),
            "total 12",
        );
    }

    #[test]
    fn refusals_name_field_and_value() {
        check(
            spec("10.6.0.5/16", &["10.6.0.9"]),
            r#"error: spec.subnet: "10.6.0.5/16": host bits are set; the network is 10.6.0.0/16"#,
        );
        check(
            spec("10.6.0.0/16", &[]),
            r#"error: spec.ips: "": is required: list the addresses of the subnet the pool may hand out"#,
        );
        check(
            spec("10.6.0.0/16", &["10.6.0.1", "010.6.0.2"]),
            r#"error: spec.ips[1]: "010.6.0.2": IPv4 octets must not have leading zeros"#,
        );
        check(
            spec("10.6.0.0/16", &["fd00::1"]),
            r#"error: spec.ips[0]: "fd00::1": is outside the subnet 10.6.0.0/16"#,
        );
        check(
            IpPoolSpec {
                exclude_ips: vec!["10.7.0.1".into()],
                ..spec("10.6.0.0/16", &["10.6.0.1"])
            },
            r#"error: spec.excludeIPs[0]: "10.7.0.1": is outside the subnet 10.6.0.0/16"#,
        );
        check(
            IpPoolSpec {
                gateway: Some("10.9.0.1".into()),
                ..spec("10.6.0.0/16", &["10.6.0.2"])
            },
            r#"error: spec.gateway: "10.9.0.1": is outside the subnet 10.6.0.0/16"#,
        );
        check(
            IpPoolSpec {
                ip_version: Some(6),
                ..spec("10.6.0.0/16", &["10.6.0.2"])
            },
            r#"error: spec.ipVersion: "6": does not match the subnet 10.6.0.0/16, which is IPv4"#,
        );
        check(
            IpPoolSpec {
                ip_version: Some(5),
                ..spec("10.6.0.0/16", &["10.6.0.2"])
            },
            r#"error: spec.ipVersion: "5": must be 4 or 6"#,
        );
        check(
            IpPoolSpec {
                gateway: Some("10.6.0.1".into()),
                routes: vec![
                    RouteSpec {
                        dst: "10.8.0.0/16".into(),
                        gw: None,
                    },
                    RouteSpec {
                        dst: "10.8.0.0/16".into(),
                        gw: Some("10.6.0.254".into()),
                    },
                ],
                ..spec("10.6.0.0/16", &["10.6.0.2"])
            },
            r#"error: spec.routes[1].dst: "10.8.0.0/16": is the destination of an earlier route"#,
        );
        check(
            IpPoolSpec {
                routes: vec![RouteSpec {
                    dst: "0.0.0.0/0".into(),
                    gw: None,
                }],
                ..spec("10.6.0.0/16", &["10.6.0.2"])
            },
            r#"error: spec.routes[0].dst: "0.0.0.0/0": a default route needs a gateway: set the route's gw or spec.gateway"#,
        );
        check(
            IpPoolSpec {
                routes: vec![RouteSpec {
                    dst: "0.0.0.0/0".into(),
                    gw: Some("10.6.0.1".into()),
                }],
                ..spec("10.6.0.0/16", &["10.6.0.2"])
            },
            "total 1",
        );
        check(
            IpPoolSpec {
                routes: vec![RouteSpec {
                    dst: "::/0".into(),
                    gw: None,
                }],
                ..spec("10.6.0.0/16", &["10.6.0.2"])
            },
            r#"error: spec.routes[0].dst: "::/0": is not IPv4, the pool's family"#,
        );
        check(
            spec("fd00::/48", &["fd00::/63"]),
            r#"error: spec.ips: "fd00::/63": lists 36893488147419103232 addresses; a pool holds at most 2^64 (an IPv6 /64)"#,
        );
        assert!(IpPool::new("", spec("10.6.0.0/16", &["10.6.0.1"])).is_err());
    }

    #[test]
    fn exclusion_rules_explain_the_gaps() {
        let pool = IpPool::new(
            "p",
            IpPoolSpec {
                gateway: Some("10.6.0.1".into()),
                exclude_ips: vec!["10.6.0.9".into()],
                ..spec("10.6.0.0/24", &["10.6.0.0/24"])
            },
        )
        .unwrap();
        let rule = |a: &str| pool.exclusion_rule(a.parse().unwrap());
        assert_eq!(rule("10.6.0.0"), Some("network address of the subnet"));
        assert_eq!(rule("10.6.0.255"), Some("broadcast address of the subnet"));
        assert_eq!(rule("10.6.0.1"), Some("spec.gateway"));
        assert_eq!(rule("10.6.0.9"), Some("spec.excludeIPs"));
        assert_eq!(rule("10.6.0.2"), None);
    }
}
