//! What ADD, CHECK and STATUS allocate: one slot per range set and per `ipam.ippools`
//! family, the inline pools of `ipam.ranges`, the network's own `ipam.reserved`, the
//! routes and DNS of the result, and the requested addresses routed to their slots.

use std::net::IpAddr;

use ipam_core::backend::to_u128;
use ipam_core::{Family, FamilySets, IpPool, IpRange, ObjectName, Slot};
use serde::Deserialize;
use serde_json::Value;

use super::fields::{invalid, requested_addr, typed};
use super::ranges::{range_slots, RangeWire};
use super::routes::{dns, route, DnsWire, RouteWire};
use super::NetConf;
use crate::cni::env::CniArgs;
use crate::cni::error::{CniError, Code};
use crate::cni::settings::{Dns, Route};

/// One slot per non-empty family of a list of pool names (`ipam.ippools`, or a Pod's
/// annotation), the names validated, none twice.
fn pool_slots(
    field: &str,
    ipv4: Vec<String>,
    ipv6: Vec<String>,
) -> Result<Vec<SlotPlan>, CniError> {
    let mut slots = Vec::new();
    for (family, key, names) in [(Family::V4, "ipv4", ipv4), (Family::V6, "ipv6", ipv6)] {
        if names.is_empty() {
            continue;
        }
        let mut pools = Vec::new();
        for (k, n) in names.iter().enumerate() {
            let name = ObjectName::new(n.as_str())
                .map_err(|e| invalid(&format!("{field}.{key}[{k}]"), n, e.reason()))?;
            if pools.contains(&name) {
                return Err(invalid(
                    &format!("{field}.{key}[{k}]"),
                    n,
                    "is listed twice",
                ));
            }
            pools.push(name);
        }
        slots.push(SlotPlan::new(
            format!("{field}.{key}"),
            family,
            pools,
            SlotOrigin::IpPools,
        ));
    }
    Ok(slots)
}

#[derive(Deserialize)]
struct PlanWire {
    ipam: IpamWire,
    #[serde(default)]
    args: Option<ArgsWire>,
    #[serde(default, rename = "runtimeConfig")]
    runtime_config: Option<IpsWire>,
}

#[derive(Deserialize)]
struct IpamWire {
    #[serde(default)]
    ranges: Option<Vec<Vec<RangeWire>>>,
    #[serde(default)]
    ippools: Option<IpPoolsWire>,
    #[serde(default)]
    reserved: Option<Vec<String>>,
    #[serde(default)]
    routes: Option<Vec<RouteWire>>,
    #[serde(default)]
    dns: Option<DnsWire>,
}

#[derive(Deserialize)]
struct IpPoolsWire {
    #[serde(default)]
    ipv4: Option<Vec<String>>,
    #[serde(default)]
    ipv6: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct ArgsWire {
    #[serde(default)]
    cni: Option<IpsWire>,
}

#[derive(Deserialize)]
struct IpsWire {
    #[serde(default)]
    ips: Option<Vec<String>>,
}

/// Where a slot's candidates come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SlotOrigin {
    /// Range set `ipam.ranges[index]`: inline pools.
    RangeSet {
        /// The set's index.
        index: usize,
        /// Each range's first and last address, to route requested addresses.
        ranges: Vec<(u128, u128)>,
    },
    /// `ipam.ippools.ipv4` or `.ipv6`: pools of the store.
    IpPools,
}

/// One address the request wants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotPlan {
    /// The configuration field the slot comes from, for messages (`ipam.ranges[0]`).
    pub field: String,
    /// The engine's slot: its candidate pools in order, its family (always named), and the
    /// requested address routed to it, if any.
    pub slot: Slot,
    /// Where the candidates come from.
    pub origin: SlotOrigin,
}

impl SlotPlan {
    pub(super) fn new(
        field: String,
        family: Family,
        pools: Vec<ObjectName>,
        origin: SlotOrigin,
    ) -> Self {
        SlotPlan {
            field,
            slot: Slot::any_of(pools).family(family),
            origin,
        }
    }

    /// The family the slot is for: the one it was planned with.
    pub fn family(&self) -> Family {
        self.slot
            .expected_family()
            .expect("SlotPlan::new names the family of every slot")
    }
}

/// Everything an ADD asks for, validated: slots, the inline pools it defines, the network's
/// own reservations, and what is copied into the result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// One per range set, then one per non-empty `ippools` family.
    pub slots: Vec<SlotPlan>,
    /// The pools `ranges` define, named `{network}-{set}` or `{network}-{set}-{range}`.
    pub inline_pools: Vec<IpPool>,
    /// `ipam.reserved`.
    pub reserved: FamilySets,
    /// `ipam.routes`, as they go into the result.
    pub routes: Vec<Route>,
    /// `ipam.dns`, as it goes into the result.
    pub dns: Option<Dns>,
}

impl Plan {
    /// Validates the allocation part of `conf` for network `net`, with requested addresses
    /// from `args` (`CNI_ARGS`), `args.cni.ips` and `runtimeConfig.ips`.
    pub fn parse(conf: &Value, net: &NetConf, args: &CniArgs) -> Result<Plan, CniError> {
        let wire: PlanWire = typed(conf, "")?;
        let ipam = wire.ipam;
        let ranges = ipam.ranges.unwrap_or_default();
        let (mut slots, inline_pools) = range_slots(&net.name, &ranges)?;

        if let Some(p) = ipam.ippools {
            slots.extend(pool_slots(
                "ipam.ippools",
                p.ipv4.unwrap_or_default(),
                p.ipv6.unwrap_or_default(),
            )?);
        }
        if slots.is_empty() {
            return Err(CniError::new(
                Code::InvalidConfig,
                "ipam: neither `ranges` nor `ippools` lists anything to allocate from; give at least one",
            ));
        }

        let mut reserved = Vec::new();
        for (k, text) in ipam.reserved.unwrap_or_default().iter().enumerate() {
            let range = IpRange::parse(text)
                .map_err(|e| invalid(&format!("ipam.reserved[{k}]"), text, e.kind()))?;
            reserved.push(range);
        }
        let reserved = FamilySets::from_ranges(&reserved);

        let routes = ipam
            .routes
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(k, r)| route(k, r))
            .collect::<Result<Vec<_>, _>>()?;
        let dns = ipam.dns.map(dns).transpose()?;

        let mut plan = Plan {
            slots,
            inline_pools,
            reserved,
            routes,
            dns,
        };
        let mut requested = Vec::new();
        for (k, text) in args.ips.iter().enumerate() {
            requested.push((format!("CNI_ARGS IP[{k}]"), text.clone()));
        }
        for (prefix, list) in [
            (
                "args.cni.ips",
                wire.args.and_then(|a| a.cni).and_then(|c| c.ips),
            ),
            ("runtimeConfig.ips", wire.runtime_config.and_then(|r| r.ips)),
        ] {
            for (k, text) in list.unwrap_or_default().into_iter().enumerate() {
                requested.push((format!("{prefix}[{k}]"), text));
            }
        }
        for (field, text) in requested {
            let addr = requested_addr(&field, &text)?;
            plan.route_requested(&net.name, &field, &text, addr)?;
        }
        Ok(plan)
    }

    /// Replaces the `ippools` slots with the pools a Pod's annotation names:
    /// `{"ipv4": [...], "ipv6": [...]}`, Spiderpool's format (its other keys are ignored).
    /// Addresses requested of the replaced slots go to the new ones of their family.
    pub fn use_pod_pools(
        &mut self,
        network: &str,
        annotation: &str,
        value: &str,
    ) -> Result<(), CniError> {
        #[derive(Deserialize)]
        struct Wire {
            #[serde(default)]
            ipv4: Vec<String>,
            #[serde(default)]
            ipv6: Vec<String>,
        }
        let field = format!("Pod annotation {annotation}");
        let wire: Wire = serde_json::from_str(value).map_err(|e| {
            invalid(
                &field,
                value,
                format!("{e}; expected {{\"ipv4\": [POOL, ...], \"ipv6\": [...]}}"),
            )
        })?;
        let moved: Vec<IpAddr> = self
            .slots
            .iter()
            .filter(|s| s.origin == SlotOrigin::IpPools)
            .filter_map(|s| s.slot.requested())
            .collect();
        self.slots.retain(|s| s.origin != SlotOrigin::IpPools);
        self.slots.extend(pool_slots(&field, wire.ipv4, wire.ipv6)?);
        if self.slots.is_empty() {
            return Err(invalid(
                &field,
                value,
                "names no pool, and the network has no `ranges`",
            ));
        }
        for addr in moved {
            let text = addr.to_string();
            self.route_requested(network, "a requested address", &text, addr)?;
        }
        Ok(())
    }

    /// Puts a requested address in the slot whose range contains it, or else in the
    /// `ippools` slot of its family.
    fn route_requested(
        &mut self,
        network: &str,
        field: &str,
        text: &str,
        addr: IpAddr,
    ) -> Result<(), CniError> {
        let family = Family::of(addr);
        let value = to_u128(addr);
        if self.slots.iter().any(|s| s.slot.requested() == Some(addr)) {
            return Ok(()); // the same address from two sources
        }
        let in_range = |s: &SlotPlan| match &s.origin {
            SlotOrigin::RangeSet { ranges, .. } => {
                s.family() == family && ranges.iter().any(|(a, b)| (*a..=*b).contains(&value))
            }
            SlotOrigin::IpPools => false,
        };
        let index = self
            .slots
            .iter()
            .position(in_range)
            .or_else(|| {
                self.slots
                    .iter()
                    .position(|s| s.origin == SlotOrigin::IpPools && s.family() == family)
            })
            .ok_or_else(|| {
                CniError::new(
                    Code::Unavailable,
                    format!(
                        "requested address {addr} ({field}) is not available: it is in none of \
                         the ranges of network {network:?}, which has no {family} ippools either"
                    ),
                )
            })?;
        let slot = &mut self.slots[index];
        if let Some(earlier) = slot.slot.requested() {
            return Err(invalid(
                field,
                text,
                format!(
                    "{} already has the requested address {earlier}; it yields one address",
                    slot.field
                ),
            ));
        }
        slot.slot = slot.slot.clone().requesting(addr);
        Ok(())
    }
}

#[cfg(test)]
pub(in crate::cni::config) mod tests {
    //! Also the harness of the sibling modules' tests: a configuration read as [`Plan`]
    //! and rendered as one line.

    use super::*;
    use crate::cni::version::CniVersion;
    use ipam_store::StoreChoice;
    use serde_json::json;
    use std::path::PathBuf;

    pub(in crate::cni::config) fn net() -> NetConf {
        NetConf {
            version: CniVersion::V1_1_0,
            name: "net1".into(),
            data_dir: PathBuf::from("/tmp/x"),
            store: StoreChoice::Redb,
            keep_statefulset_addresses: true,
            agent: crate::cni::config::AgentSocket::Never,
        }
    }

    /// Parses an `ipam` section (plus top-level extras) and renders the plan or the error.
    pub(in crate::cni::config) fn plan(ipam: Value, extra: Value, args: &str) -> String {
        let mut conf = json!({"cniVersion": "1.1.0", "name": "net1", "ipam": ipam});
        if let Value::Object(m) = extra {
            for (k, v) in m {
                conf[k] = v;
            }
        }
        let args = CniArgs::parse(args).unwrap();
        match Plan::parse(&conf, &net(), &args) {
            Err(e) => format!("{}: {}", e.code(), e.msg()),
            Ok(p) => p
                .slots
                .iter()
                .map(|s| {
                    let pools: Vec<String> = s
                        .slot
                        .pools()
                        .iter()
                        .map(|n| match p.inline_pools.iter().find(|q| q.name() == n) {
                            Some(q) => format!(
                                "{n}[{} gw {}]",
                                q.spec().ips.join(","),
                                q.gateway().map(|g| g.to_string()).unwrap_or_default()
                            ),
                            None => n.to_string(),
                        })
                        .collect();
                    let req = s
                        .slot
                        .requested()
                        .map(|a| format!(" ={a}"))
                        .unwrap_or_default();
                    format!("{} {}{req}", s.field, pools.join(" "))
                })
                .collect::<Vec<_>>()
                .join("; "),
        }
    }

    pub(in crate::cni::config) fn check(ipam: Value, expect: &str) {
        assert_eq!(plan(ipam.clone(), json!({}), ""), expect, "{ipam}");
    }

    #[test]
    fn bad_pools_and_reservations_name_the_field() {
        let cases = [
            (
                json!({}),
                "7: ipam: neither `ranges` nor `ippools` lists anything to allocate from; give at least one",
            ),
            (
                json!({"ippools": {"ipv4": [], "ipv6": []}}),
                "7: ipam: neither `ranges` nor `ippools` lists anything to allocate from; give at least one",
            ),
            (
                json!({"ippools": {"ipv4": ["bad/name"]}}),
                r#"7: ipam.ippools.ipv4[0]: "bad/name": must be 1-253 characters of letters, digits, '-', '.' or '_', starting with a letter or digit"#,
            ),
            (
                json!({"ippools": {"ipv4": ["p"]}, "reserved": ["10.6.0.1", "10.6.0.9-10.6.0.1"]}),
                r#"7: ipam.reserved[1]: "10.6.0.9-10.6.0.1": range start is after its end"#,
            ),
        ];
        for (ipam, expect) in cases {
            check(ipam, expect);
        }
    }
    #[test]
    fn requested_addresses_go_to_their_slot() {
        let ipam = json!({"ranges": [[{"subnet": "10.6.0.0/24"}], [{"subnet": "10.7.0.0/24"}]],
                          "ippools": {"ipv6": ["p6"]}});
        assert_eq!(
            plan(ipam.clone(), json!({}), "IP=10.7.0.5,fd00::9"),
            "ipam.ranges[0] net1-0[10.6.0.1-10.6.0.254 gw 10.6.0.1]; \
             ipam.ranges[1] net1-1[10.7.0.1-10.7.0.254 gw 10.7.0.1] =10.7.0.5; ipam.ippools.ipv6 p6 =fd00::9"
        );
        assert_eq!(
            plan(
                ipam.clone(),
                json!({"args": {"cni": {"ips": ["10.6.0.7/24"]}}, "runtimeConfig": {"ips": ["10.6.0.7"]}}),
                ""
            ),
            "ipam.ranges[0] net1-0[10.6.0.1-10.6.0.254 gw 10.6.0.1] =10.6.0.7; \
             ipam.ranges[1] net1-1[10.7.0.1-10.7.0.254 gw 10.7.0.1]; ipam.ippools.ipv6 p6"
        );
        assert_eq!(
            plan(ipam.clone(), json!({}), "IP=10.6.0.5,10.6.0.6"),
            r#"7: CNI_ARGS IP[1]: "10.6.0.6": ipam.ranges[0] already has the requested address 10.6.0.5; it yields one address"#
        );
        assert_eq!(
            plan(ipam.clone(), json!({}), "IP=10.9.0.1"),
            r#"101: requested address 10.9.0.1 (CNI_ARGS IP[0]) is not available: it is in none of the ranges of network "net1", which has no IPv4 ippools either"#
        );
        assert_eq!(
            plan(
                ipam.clone(),
                json!({"runtimeConfig": {"ips": ["10.6.0.1/40"]}}),
                ""
            ),
            r#"7: runtimeConfig.ips[0]: "10.6.0.1/40": prefix length must be 0-32 for IPv4 or 0-128 for IPv6"#
        );
        assert_eq!(
            plan(ipam, json!({"runtimeConfig": {"ips": "10.6.0.1"}}), ""),
            "6: runtimeConfig.ips: invalid type: string \"10.6.0.1\", expected a sequence"
        );
    }
}
