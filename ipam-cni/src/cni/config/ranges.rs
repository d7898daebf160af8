//! `ipam.ranges`: host-local's range sets, read with host-local's defaults, each range an
//! inline pool (a lens, never stored) and each set a slot that yields one address.

use std::net::IpAddr;

use ipam_core::backend::to_u128;
use ipam_core::{parse_addr, parse_cidr, Family, IpPool, IpPoolSpec, ObjectName};
use ipnet::IpNet;
use serde::Deserialize;

use super::fields::{invalid, required};
use super::plan::{SlotOrigin, SlotPlan};
use crate::cni::error::{CniError, Code};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RangeWire {
    #[serde(default)]
    subnet: Option<String>,
    #[serde(default)]
    range_start: Option<String>,
    #[serde(default)]
    range_end: Option<String>,
    #[serde(default)]
    gateway: Option<String>,
}

/// The slots and inline pools of `ipam.ranges`: one slot per range set, one pool per range,
/// named after the network (`{network}-{set}`, or `{network}-{set}-{range}` in a set of
/// several). No two ranges of a family may overlap, within a set or across sets.
pub(super) fn range_slots(
    network: &str,
    ranges: &[Vec<RangeWire>],
) -> Result<(Vec<SlotPlan>, Vec<IpPool>), CniError> {
    let mut slots = Vec::new();
    let mut inline_pools = Vec::new();
    if !ranges.is_empty() {
        ObjectName::new(network).map_err(|e| {
            invalid(
                "name",
                network,
                format!(
                    "{}; the pools of `ipam.ranges` are named after the network",
                    e.reason()
                ),
            )
        })?;
    }
    // (field, family, first, last) of every range so far, to refuse overlaps.
    let mut seen: Vec<(String, Family, u128, u128)> = Vec::new();
    for (i, set) in ranges.iter().enumerate() {
        if set.is_empty() {
            return Err(CniError::new(
                Code::InvalidConfig,
                format!("ipam.ranges[{i}]: a range set needs at least one range"),
            ));
        }
        let mut family = None;
        let mut pools = Vec::new();
        let mut bounds = Vec::new();
        for (j, r) in set.iter().enumerate() {
            let field = format!("ipam.ranges[{i}][{j}]");
            let range = InlineRange::parse(&field, r)?;
            match family {
                Some(f) if f != range.family => {
                    return Err(invalid(
                        &format!("{field}.subnet"),
                        &range.subnet.to_string(),
                        format!(
                            "is {} while ipam.ranges[{i}][0] is {f}; a range set holds one family",
                            range.family
                        ),
                    ))
                }
                _ => family = Some(range.family),
            }
            for (other, f, first, last) in &seen {
                if *f == range.family && range.first <= *last && *first <= range.last {
                    return Err(invalid(
                        &field,
                        &range.text(),
                        format!("overlaps {other} ({})", range_text(*f, *first, *last)),
                    ));
                }
            }
            seen.push((field.clone(), range.family, range.first, range.last));
            let name = if set.len() == 1 {
                format!("{network}-{i}")
            } else {
                format!("{network}-{i}-{j}")
            };
            let pool = range.pool(&name).map_err(|e| {
                CniError::new(
                    Code::InvalidConfig,
                    format!("{field}: {e} (the inline pool {name:?})"),
                )
            })?;
            pools.push(pool.name().clone());
            bounds.push((range.first, range.last));
            inline_pools.push(pool);
        }
        slots.push(SlotPlan::new(
            format!("ipam.ranges[{i}]"),
            family.expect("a set has at least one range"),
            pools,
            SlotOrigin::RangeSet {
                index: i,
                ranges: bounds,
            },
        ));
    }
    Ok((slots, inline_pools))
}

/// One validated entry of a range set.
struct InlineRange {
    family: Family,
    subnet: IpNet,
    first: u128,
    last: u128,
    gateway: IpAddr,
}

impl InlineRange {
    /// host-local's rules: the subnet must leave room for a gateway and an address; the range
    /// defaults to the whole subnet less its network address (and, for IPv4, its broadcast);
    /// the gateway defaults to the network address + 1.
    fn parse(field: &str, r: &RangeWire) -> Result<InlineRange, CniError> {
        let text = r.subnet.as_deref().ok_or_else(|| {
            required(
                &format!("{field}.subnet"),
                ": the CIDR the range allocates from",
            )
        })?;
        let subnet =
            parse_cidr(text).map_err(|e| invalid(&format!("{field}.subnet"), text, e.kind()))?;
        let family = Family::of(subnet.addr());
        let bits = if family == Family::V4 { 32 } else { 128 };
        if subnet.prefix_len() > bits - 2 {
            return Err(invalid(
                &format!("{field}.subnet"),
                text,
                format!("is too small to allocate from (at most /{})", bits - 2),
            ));
        }
        let network = to_u128(subnet.network());
        let broadcast = to_u128(subnet.broadcast());
        let inside = |key: &str, text: &str| -> Result<u128, CniError> {
            let f = format!("{field}.{key}");
            let addr = parse_addr(text).map_err(|e| invalid(&f, text, e.kind()))?;
            if Family::of(addr) != family {
                return Err(invalid(
                    &f,
                    text,
                    format!(
                        "is {} but the subnet {subnet} is {family}",
                        Family::of(addr)
                    ),
                ));
            }
            if !subnet.contains(&addr) {
                return Err(invalid(&f, text, format!("is outside the subnet {subnet}")));
            }
            Ok(to_u128(addr))
        };
        let first = match &r.range_start {
            Some(t) => inside("rangeStart", t)?,
            None => network + 1,
        };
        let last = match &r.range_end {
            Some(t) => inside("rangeEnd", t)?,
            None if family == Family::V4 => broadcast - 1,
            None => broadcast,
        };
        if first > last {
            let t = r.range_end.as_deref().unwrap_or_default();
            return Err(invalid(
                &format!("{field}.rangeEnd"),
                t,
                format!("is before rangeStart {}", family.addr(first)),
            ));
        }
        let gateway = match &r.gateway {
            Some(t) => inside("gateway", t)?,
            None => network + 1,
        };
        Ok(InlineRange {
            family,
            subnet,
            first,
            last,
            gateway: family.addr(gateway),
        })
    }

    fn text(&self) -> String {
        range_text(self.family, self.first, self.last)
    }

    fn pool(&self, name: &str) -> Result<IpPool, ipam_core::ValidationError> {
        IpPool::new(
            name,
            IpPoolSpec {
                subnet: self.subnet.to_string(),
                ips: vec![self.text()],
                gateway: Some(self.gateway.to_string()),
                ..Default::default()
            },
        )
    }
}

fn range_text(family: Family, first: u128, last: u128) -> String {
    if first == last {
        family.addr(first).to_string()
    } else {
        format!("{}-{}", family.addr(first), family.addr(last))
    }
}

#[cfg(test)]
mod tests {
    use crate::cni::config::plan::tests::check;
    use serde_json::json;

    #[test]
    fn ranges_follow_host_local_defaults() {
        check(
            json!({"ranges": [[{"subnet": "10.6.0.0/16"}]]}),
            "ipam.ranges[0] net1-0[10.6.0.1-10.6.255.254 gw 10.6.0.1]",
        );
        check(
            json!({"ranges": [[{"subnet": "fd00::/120", "gateway": "fd00::fe"}]]}),
            "ipam.ranges[0] net1-0[fd00::1-fd00::ff gw fd00::fe]",
        );
        check(
            json!({"ranges": [[{"subnet": "10.6.0.0/16", "rangeStart": "10.6.168.131",
                                "rangeEnd": "10.6.168.133", "gateway": "10.6.0.1"}]]}),
            "ipam.ranges[0] net1-0[10.6.168.131-10.6.168.133 gw 10.6.0.1]",
        );
        check(
            json!({"ranges": [
                [{"subnet": "10.6.0.0/24"}, {"subnet": "10.7.0.0/24", "rangeStart": "10.7.0.9", "rangeEnd": "10.7.0.9"}],
                [{"subnet": "fd00::/64", "rangeStart": "fd00::10", "rangeEnd": "fd00::20"}]
            ], "ippools": {"ipv4": ["a", "b"], "ipv6": []}}),
            "ipam.ranges[0] net1-0-0[10.6.0.1-10.6.0.254 gw 10.6.0.1] net1-0-1[10.7.0.9 gw 10.7.0.1]; \
             ipam.ranges[1] net1-1[fd00::10-fd00::20 gw fd00::1]; ipam.ippools.ipv4 a b",
        );
    }

    #[test]
    fn bad_ranges_name_the_field() {
        let cases = [
            (
                json!({"ranges": [[{"subnet": "10.6.0.0/16", "rangeStart": "10.6.0.300"}]]}),
                r#"7: ipam.ranges[0][0].rangeStart: "10.6.0.300": not an IPv4 or IPv6 address"#,
            ),
            (
                json!({"ranges": [[{"subnet": "10.6.0.0/16"}, {"subnet": "10.7.0.0/16", "rangeStart": "10.7.0.300"}]]}),
                r#"7: ipam.ranges[0][1].rangeStart: "10.7.0.300": not an IPv4 or IPv6 address"#,
            ),
            (
                json!({"ranges": [[{"subnet": "10.6.0.5/16"}]]}),
                r#"7: ipam.ranges[0][0].subnet: "10.6.0.5/16": host bits are set; the network is 10.6.0.0/16"#,
            ),
            (
                json!({"ranges": [[{"subnet": "10.6.0.0/16"}, {"subnet": "fd00::/64"}]]}),
                r#"7: ipam.ranges[0][1].subnet: "fd00::/64": is IPv6 while ipam.ranges[0][0] is IPv4; a range set holds one family"#,
            ),
            (
                json!({"ranges": [[{"subnet": "10.6.0.0/16"}], [{"subnet": "10.6.1.0/24"}]]}),
                r#"7: ipam.ranges[1][0]: "10.6.1.1-10.6.1.254": overlaps ipam.ranges[0][0] (10.6.0.1-10.6.255.254)"#,
            ),
            (
                json!({"ranges": [[{"subnet": "10.6.0.0/16", "rangeStart": "10.7.0.1"}]]}),
                r#"7: ipam.ranges[0][0].rangeStart: "10.7.0.1": is outside the subnet 10.6.0.0/16"#,
            ),
            (
                json!({"ranges": [[{"subnet": "10.6.0.0/16", "rangeStart": "10.6.0.9", "rangeEnd": "10.6.0.8"}]]}),
                r#"7: ipam.ranges[0][0].rangeEnd: "10.6.0.8": is before rangeStart 10.6.0.9"#,
            ),
            (
                json!({"ranges": [[{"subnet": "10.6.0.0/16", "gateway": "fd00::1"}]]}),
                r#"7: ipam.ranges[0][0].gateway: "fd00::1": is IPv6 but the subnet 10.6.0.0/16 is IPv4"#,
            ),
            (
                json!({"ranges": [[{"subnet": "10.6.0.0/31"}]]}),
                r#"7: ipam.ranges[0][0].subnet: "10.6.0.0/31": is too small to allocate from (at most /30)"#,
            ),
            (
                json!({"ranges": [[{"rangeStart": "10.6.0.1"}]]}),
                "7: ipam.ranges[0][0].subnet: is required: the CIDR the range allocates from",
            ),
            (
                json!({"ranges": [[]]}),
                "7: ipam.ranges[0]: a range set needs at least one range",
            ),
            (
                json!({"ranges": [[{"subnet": 10}]]}),
                "6: ipam.ranges[0][0].subnet: invalid type: integer `10`, expected a string",
            ),
            (
                json!({"ranges": {"subnet": "10.6.0.0/16"}}),
                "6: ipam.ranges: invalid type: map, expected a sequence",
            ),
        ];
        for (ipam, expect) in cases {
            check(ipam, expect);
        }
    }
}
