//! Results, written in the request's version.
//!
//! An IPAM plugin's result has `ips` (no `interfaces`: the calling plugin adds those),
//! `routes` and `dns`. 0.3.x and 0.4.0 carry `ips[].version`; 1.0.0 dropped it.

use ipam_core::{Allocation, Family, IpPool};
use serde_json::{json, Map, Value};

use super::version::CniVersion;

/// The result of an ADD: one `ips` entry per allocation, in slot order, with the pool
/// subnet's prefix length and gateway; `routes` = the configuration's, then each pool's
/// (without duplicates); `dns` as configured.
///
/// ```
/// use ipam_cni::cni::result::add_result;
/// use ipam_cni::cni::version::CniVersion;
/// use ipam_core::*;
/// let pool = IpPool::new("p", IpPoolSpec {
///     subnet: "10.6.0.0/16".into(), ips: vec!["10.6.0.5".into()],
///     gateway: Some("10.6.0.1".into()), ..Default::default()
/// }).unwrap();
/// let a = Allocation {
///     address: "10.6.0.5".parse().unwrap(), pool: pool.name().clone(), network: "n".into(),
///     owner: Owner::new("c", "eth0").unwrap(), pod: None,
/// };
/// let r = add_result(CniVersion::V0_4_0, &[(a, pool)], &[], None);
/// assert_eq!(r["ips"][0]["address"], "10.6.0.5/16");
/// assert_eq!(r["ips"][0]["version"], "4");
/// ```
pub fn add_result(
    version: CniVersion,
    allocations: &[(Allocation, IpPool)],
    config_routes: &[Value],
    dns: Option<&Value>,
) -> Value {
    let mut ips = Vec::new();
    let mut routes: Vec<Value> = config_routes.to_vec();
    for (a, pool) in allocations {
        let mut ip = Map::new();
        if version.has_ip_version_field() {
            let v = match pool.family() {
                Family::V4 => "4",
                Family::V6 => "6",
            };
            ip.insert("version".into(), json!(v));
        }
        ip.insert(
            "address".into(),
            json!(format!("{}/{}", a.address, pool.subnet().prefix_len())),
        );
        if let Some(gw) = pool.gateway() {
            ip.insert("gateway".into(), json!(gw.to_string()));
        }
        ips.push(Value::Object(ip));
        for r in pool.routes() {
            let mut route = Map::new();
            route.insert("dst".into(), json!(r.dst.to_string()));
            if let Some(gw) = r.gw.or(pool.gateway()) {
                route.insert("gw".into(), json!(gw.to_string()));
            }
            let route = Value::Object(route);
            // A route given twice would make the calling plugin's `ip route add` fail.
            if !routes.contains(&route) {
                routes.push(route);
            }
        }
    }
    let mut out = Map::new();
    out.insert("cniVersion".into(), json!(version.as_str()));
    out.insert("ips".into(), Value::Array(ips));
    if !routes.is_empty() {
        out.insert("routes".into(), Value::Array(routes));
    }
    out.insert("dns".into(), dns.cloned().unwrap_or_else(|| json!({})));
    Value::Object(out)
}

/// The answer to VERSION.
pub fn version_result() -> Value {
    json!({
        "cniVersion": CniVersion::LATEST.as_str(),
        "supportedVersions": CniVersion::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipam_core::{IpPoolSpec, Owner, RouteSpec};

    fn alloc(addr: &str, pool: &IpPool) -> (Allocation, IpPool) {
        (
            Allocation {
                address: addr.parse().unwrap(),
                pool: pool.name().clone(),
                network: "net1".into(),
                owner: Owner::new("c", "eth0").unwrap(),
                pod: None,
            },
            pool.clone(),
        )
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
            json!({"dst": "0.0.0.0/0"}),
            json!({"dst": "10.8.0.0/16", "gw": "10.6.0.1"}),
        ];
        let dns = json!({"nameservers": ["10.6.0.10"]});
        assert_eq!(
            add_result(CniVersion::V0_3_1, &allocs, &routes, Some(&dns)),
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
            add_result(CniVersion::V1_1_0, &allocs[..1], &[], None),
            json!({
                "cniVersion": "1.1.0",
                "ips": [{"address": "10.6.168.131/16", "gateway": "10.6.0.1"}],
                "routes": [{"dst": "10.8.0.0/16", "gw": "10.6.0.1"}],
                "dns": {}
            })
        );
    }

    #[test]
    fn version_lists_all() {
        assert_eq!(
            version_result(),
            json!({"cniVersion": "1.1.0",
                   "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]})
        );
    }
}
