//! `ipam.routes` and `ipam.dns`: validated, then copied into the result as written.

use ipam_core::{parse_addr, parse_cidr};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::fields::{invalid, required};
use crate::cni::error::CniError;
use crate::cni::settings::{Dns, Route};

#[derive(Deserialize)]
pub(super) struct RouteWire {
    #[serde(default)]
    dst: Option<String>,
    #[serde(default)]
    gw: Option<String>,
    /// 1.1.0's `mtu`, `advmss`, `priority`, `table`, `scope`: passed through as written.
    #[serde(flatten)]
    extra: Map<String, Value>,
}

#[derive(Deserialize)]
pub(super) struct DnsWire {
    #[serde(default)]
    nameservers: Option<Vec<String>>,
    #[serde(default)]
    domain: Option<String>,
    #[serde(default)]
    search: Option<Vec<String>>,
    #[serde(default)]
    options: Option<Vec<String>>,
}

/// `ipam.routes[k]`: `dst` a CIDR, `gw` (optional) an address of its family.
pub(super) fn route(k: usize, r: RouteWire) -> Result<Route, CniError> {
    let field = format!("ipam.routes[{k}]");
    let dst = r
        .dst
        .ok_or_else(|| required(&format!("{field}.dst"), ": the route's destination CIDR"))?;
    let net = parse_cidr(&dst).map_err(|e| invalid(&format!("{field}.dst"), &dst, e.kind()))?;
    let gw = match r.gw {
        None => None,
        Some(gw) => {
            let addr =
                parse_addr(&gw).map_err(|e| invalid(&format!("{field}.gw"), &gw, e.kind()))?;
            if addr.is_ipv4() != net.addr().is_ipv4() {
                return Err(invalid(
                    &format!("{field}.gw"),
                    &gw,
                    format!("is not of the family of dst {net}"),
                ));
            }
            Some(addr)
        }
    };
    Ok(Route {
        dst: net,
        gw,
        extra: r.extra.into_iter().collect(),
    })
}

/// `ipam.dns`: every nameserver an address.
pub(super) fn dns(d: DnsWire) -> Result<Dns, CniError> {
    if let Some(ns) = &d.nameservers {
        for (k, n) in ns.iter().enumerate() {
            parse_addr(n)
                .map_err(|e| invalid(&format!("ipam.dns.nameservers[{k}]"), n, e.kind()))?;
        }
    }
    Ok(Dns {
        domain: d.domain,
        nameservers: d.nameservers,
        options: d.options,
        search: d.search,
    })
}

#[cfg(test)]
mod tests {
    use crate::cni::config::plan::tests::check;
    use serde_json::json;

    #[test]
    fn bad_routes_and_dns_name_the_field() {
        let cases = [
            (
                json!({"ippools": {"ipv4": ["p"]}, "routes": [{"dst": "0.0.0.0/33"}]}),
                r#"7: ipam.routes[0].dst: "0.0.0.0/33": prefix length must be 0-32 for IPv4 or 0-128 for IPv6"#,
            ),
            (
                json!({"ippools": {"ipv4": ["p"]}, "dns": {"nameservers": ["010.0.0.1"]}}),
                r#"7: ipam.dns.nameservers[0]: "010.0.0.1": IPv4 octets must not have leading zeros"#,
            ),
        ];
        for (ipam, expect) in cases {
            check(ipam, expect);
        }
    }
}
