//! What the plugin prints, as typed values: ADD's result in the request's version, VERSION's
//! answer, and the error object.
//!
//! An IPAM plugin's result has `ips` (no `interfaces`: the calling plugin adds those),
//! `routes` and `dns`. 0.3.x and 0.4.0 carry `ips[].version`; 1.0.0 dropped it.
//!
//! Every struct declares its fields in alphabetical order: results have always been written
//! with sorted keys (serde_json's map sorts them), and a runtime or a test may compare bytes.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use ipam_core::{Allocation, Family, IpPool};
use serde::ser::Serializer;
use serde::Serialize;

use super::error::CniError;
use super::settings::{Dns, Route};
use super::version::CniVersion;

/// An ADD result, in the request's version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum AddResult {
    /// 0.3.0, 0.3.1 and 0.4.0: each address says its IP version.
    V0(ResultOf<IpConfigV0>),
    /// 1.0.0 and 1.1.0.
    V1(ResultOf<IpConfig>),
}

/// An ADD result with `ips` entries of type `Ip`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ResultOf<Ip> {
    /// The request's version.
    #[serde(rename = "cniVersion")]
    pub cni_version: CniVersion,
    /// As configured (`{}` when not).
    pub dns: Dns,
    /// One per allocation, in slot order.
    pub ips: Vec<Ip>,
    /// The configuration's, then each pool's; absent when there are none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
}

/// One address of a 1.0.0+ result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IpConfig {
    /// The address with its subnet's prefix length (`10.6.168.131/16`).
    pub address: Address,
    /// The subnet's gateway, if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
}

/// One address of a 0.3.x / 0.4.0 result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IpConfigV0 {
    /// The address with its subnet's prefix length.
    pub address: Address,
    /// The subnet's gateway, if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// `"4"` or `"6"`.
    pub version: IpVersion,
}

/// The `version` of a 0.3.x / 0.4.0 address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum IpVersion {
    /// IPv4.
    #[serde(rename = "4")]
    V4,
    /// IPv6.
    #[serde(rename = "6")]
    V6,
}

/// An address with a prefix length, written `ADDR/LEN`. (Not an `IpNet`: the address keeps
/// its host bits, and no length can be out of range for an address of the pool's own
/// subnet.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Address {
    /// The address.
    pub addr: IpAddr,
    /// The subnet's prefix length.
    pub prefix_len: u8,
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

impl Serialize for Address {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The result of an ADD: one `ips` entry per allocation, in slot order, with the pool
/// subnet's prefix length and gateway; `routes` = the configuration's, then each pool's
/// (without duplicates); `dns` as configured.
///
/// ```
/// use ipam_cni::cni::result::{add_result, render};
/// use ipam_cni::cni::version::CniVersion;
/// use ipam_core::*;
/// let pool = IpPool::new("p", IpPoolSpec {
///     subnet: "10.6.0.0/16".into(), ips: vec!["10.6.0.5".into()],
///     gateway: Some("10.6.0.1".into()), ..Default::default()
/// }).unwrap();
/// let a = Allocation {
///     address: "10.6.0.5".parse().unwrap(), pool: pool.name().clone(), network: "n".into(),
///     owner: Owner::new("c", "eth0").unwrap(), pod: None, node: None,
/// };
/// let r = add_result(CniVersion::V0_4_0, &[(a, pool)], &[], None);
/// assert_eq!(
///     render(&r).unwrap(),
///     r#"{"cniVersion":"0.4.0","dns":{},"ips":[{"address":"10.6.0.5/16","gateway":"10.6.0.1","version":"4"}]}"#
/// );
/// ```
pub fn add_result(
    version: CniVersion,
    allocations: &[(Allocation, IpPool)],
    config_routes: &[Route],
    dns: Option<&Dns>,
) -> AddResult {
    let mut ips = Vec::new();
    let mut routes: Vec<Route> = config_routes.to_vec();
    for (a, pool) in allocations {
        ips.push(IpConfigV0 {
            address: Address {
                addr: a.address,
                prefix_len: pool.subnet().prefix_len(),
            },
            gateway: pool.gateway(),
            version: match pool.family() {
                Family::V4 => IpVersion::V4,
                Family::V6 => IpVersion::V6,
            },
        });
        for r in pool.routes() {
            let route = Route {
                dst: r.dst,
                gw: r.gw.or(pool.gateway()),
                extra: BTreeMap::new(),
            };
            // A route given twice would make the calling plugin's `ip route add` fail.
            if !routes.contains(&route) {
                routes.push(route);
            }
        }
    }
    let dns = dns.cloned().unwrap_or_default();
    if version.has_ip_version_field() {
        AddResult::V0(ResultOf {
            cni_version: version,
            dns,
            ips,
            routes,
        })
    } else {
        AddResult::V1(ResultOf {
            cni_version: version,
            dns,
            ips: ips
                .into_iter()
                .map(|ip| IpConfig {
                    address: ip.address,
                    gateway: ip.gateway,
                })
                .collect(),
            routes,
        })
    }
}

/// The answer to VERSION.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VersionResult {
    /// The newest version this plugin speaks.
    #[serde(rename = "cniVersion")]
    pub cni_version: CniVersion,
    /// Every version it speaks, oldest first.
    #[serde(rename = "supportedVersions")]
    pub supported_versions: &'static [CniVersion],
}

/// The answer to VERSION.
pub fn version_result() -> VersionResult {
    VersionResult {
        cni_version: CniVersion::LATEST,
        supported_versions: &CniVersion::ALL,
    }
}

/// A failure as the specification prints it: `{"cniVersion","code","msg","details"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ErrorResult<'a> {
    /// The request's version when it was understood, else the newest.
    #[serde(rename = "cniVersion")]
    pub cni_version: CniVersion,
    /// The code.
    pub code: u32,
    /// The cause, or empty.
    pub details: &'a str,
    /// What failed.
    pub msg: &'a str,
}

impl<'a> ErrorResult<'a> {
    /// `e` written in `version` (the newest when the request's was not understood).
    pub fn of(e: &'a CniError, version: Option<CniVersion>) -> ErrorResult<'a> {
        ErrorResult {
            cni_version: version.unwrap_or(CniVersion::LATEST),
            code: e.code().number(),
            details: e.details(),
            msg: e.msg(),
        }
    }
}

/// One of the values above as one line of JSON (without the newline). Serializing them
/// cannot fail (every key is a string); the error is passed on rather than assumed away.
pub fn render<T: Serialize>(value: &T) -> Result<String, serde_json::Error> {
    serde_json::to_string(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipam_core::{IpPoolSpec, Owner, RouteSpec};
    use serde_json::{json, Value};

    fn alloc(addr: &str, pool: &IpPool) -> (Allocation, IpPool) {
        (
            Allocation {
                address: addr.parse().unwrap(),
                pool: pool.name().clone(),
                network: "net1".into(),
                owner: Owner::new("c", "eth0").unwrap(),
                pod: None,
                node: None,
            },
            pool.clone(),
        )
    }

    fn route(dst: &str, gw: Option<&str>, extra: Value) -> Route {
        Route {
            dst: dst.parse().unwrap(),
            gw: gw.map(|g| g.parse().unwrap()),
            extra: serde_json::from_value(extra).unwrap(),
        }
    }

    #[test]
    fn results_follow_the_version() {
        let v4 = IpPool::new(
            "p4",
            IpPoolSpec {
                subnet: "10.6.0.0/16".into(),
                ips: vec!["10.6.168.131-10.6.168.133".into()],
                gateway: Some("10.6.0.1".into()),
                routes: vec![RouteSpec {
                    dst: "10.8.0.0/16".into(),
                    gw: None,
                }],
                ..Default::default()
            },
        )
        .unwrap();
        let v6 = IpPool::new(
            "p6",
            IpPoolSpec {
                subnet: "fd00::/64".into(),
                ips: vec!["fd00::10".into()],
                ..Default::default()
            },
        )
        .unwrap();
        let allocs = [alloc("10.6.168.131", &v4), alloc("fd00::10", &v6)];
        let routes = [
            route("0.0.0.0/0", None, json!({})),
            route("10.8.0.0/16", Some("10.6.0.1"), json!({})),
        ];
        let dns = Dns {
            nameservers: Some(vec!["10.6.0.10".into()]),
            ..Default::default()
        };
        let json = |r: &AddResult| serde_json::to_value(r).unwrap();
        assert_eq!(
            json(&add_result(
                CniVersion::V0_3_1,
                &allocs,
                &routes,
                Some(&dns)
            )),
            json!({
                "cniVersion": "0.3.1",
                "ips": [
                    {"version": "4", "address": "10.6.168.131/16", "gateway": "10.6.0.1"},
                    {"version": "6", "address": "fd00::10/64"}
                ],
                "routes": [{"dst": "0.0.0.0/0"}, {"dst": "10.8.0.0/16", "gw": "10.6.0.1"}],
                "dns": {"nameservers": ["10.6.0.10"]}
            })
        );
        assert_eq!(
            json(&add_result(CniVersion::V1_1_0, &allocs[..1], &[], None)),
            json!({
                "cniVersion": "1.1.0",
                "ips": [{"address": "10.6.168.131/16", "gateway": "10.6.0.1"}],
                "routes": [{"dst": "10.8.0.0/16", "gw": "10.6.0.1"}],
                "dns": {}
            })
        );
    }

    #[test]
    fn keys_are_written_in_sorted_order() {
        let r = route(
            "192.0.2.0/24",
            Some("192.0.2.1"),
            json!({"zzz": "x", "aaa": [1], "mtu": 1400, "advmss": 1300, "priority": 5}),
        );
        assert_eq!(
            render(&r).unwrap(),
            r#"{"aaa":[1],"advmss":1300,"dst":"192.0.2.0/24","gw":"192.0.2.1","mtu":1400,"priority":5,"zzz":"x"}"#
        );
        let dns = Dns {
            domain: Some("d".into()),
            nameservers: Some(vec![]),
            options: Some(vec!["o".into()]),
            search: Some(vec!["s".into()]),
        };
        assert_eq!(
            render(&dns).unwrap(),
            r#"{"domain":"d","nameservers":[],"options":["o"],"search":["s"]}"#
        );
        let e = CniError::new(super::super::error::Code::Exhausted, "used up").with_details("d");
        assert_eq!(
            render(&ErrorResult::of(&e, Some(CniVersion::V0_3_1))).unwrap(),
            r#"{"cniVersion":"0.3.1","code":100,"details":"d","msg":"used up"}"#
        );
    }

    #[test]
    fn version_lists_all() {
        assert_eq!(
            render(&version_result()).unwrap(),
            r#"{"cniVersion":"1.1.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]}"#
        );
    }
}
