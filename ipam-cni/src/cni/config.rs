//! The network configuration on stdin: decoding (code 6 for bytes that are not JSON or a
//! field of the wrong type) and validation (code 7, naming the field and the value).
//!
//! Validation never touches the store, so a refused configuration leaves it as it was.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;

use ipam_core::backend::to_u128;
use ipam_core::{parse_addr, parse_cidr, AddrErrorKind};
use ipam_core::{Family, FamilySets, IpPool, IpPoolSpec, IpRange, ObjectName, Owner, Slot};
use ipnet::IpNet;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::env::CniArgs;
use super::error::{CniError, Code};
use super::log::{Level, LogConfig};
use super::result::{Dns, Route};
use super::version::CniVersion;
use crate::store::{self, StoreChoice, Syntax, DEFAULT_DATA_DIR};

/// The most stdin this plugin reads. A network configuration with a `prevResult` is a few
/// KiB; anything near this is a mistake or an attack, refused before it is parsed.
pub const MAX_STDIN_BYTES: usize = 1 << 20;

/// Parses stdin as a JSON object.
///
/// ```
/// use ipam_cni::cni::config::decode_stdin;
/// assert!(decode_stdin(br#"{"cniVersion": "1.1.0"}"#).is_ok());
/// assert_eq!(decode_stdin(b"{").unwrap_err().code().number(), 6);
/// ```
pub fn decode_stdin(bytes: &[u8]) -> Result<Value, CniError> {
    if bytes.len() > MAX_STDIN_BYTES {
        return Err(CniError::new(
            Code::Decode,
            format!(
                "stdin is larger than {MAX_STDIN_BYTES} bytes; expected one network configuration"
            ),
        ));
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(CniError::new(
            Code::Decode,
            "stdin is empty; expected the network configuration as a JSON object",
        ));
    }
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| CniError::new(Code::Decode, format!("stdin is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(CniError::new(
            Code::Decode,
            "stdin: expected the network configuration as a JSON object",
        ));
    }
    Ok(value)
}

/// The request's `cniVersion`: code 1 when missing or not supported.
pub fn version_of(conf: &Value) -> Result<CniVersion, CniError> {
    let supported = || {
        CniVersion::ALL
            .iter()
            .map(|v| v.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match conf.get("cniVersion") {
        None | Some(Value::Null) => Err(CniError::new(
            Code::IncompatibleVersion,
            format!(
                "cniVersion is missing; this plugin supports {}",
                supported()
            ),
        )),
        Some(Value::String(s)) => CniVersion::parse(s).ok_or_else(|| {
            CniError::new(
                Code::IncompatibleVersion,
                format!(
                    "cniVersion: {s:?}: not supported; this plugin supports {}",
                    supported()
                ),
            )
        }),
        Some(other) => Err(CniError::new(
            Code::Decode,
            format!("cniVersion: expected a string, found {other}"),
        )),
    }
}

/// Deserializes `value` (found at `prefix`) into `T`; a wrong type is code 6 and names the
/// field's path.
fn typed<T: DeserializeOwned>(value: &Value, prefix: &str) -> Result<T, CniError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = match (prefix.is_empty(), path.as_str()) {
            (true, p) => p.to_owned(),
            (false, ".") => prefix.to_owned(),
            (false, p) => format!("{prefix}.{p}"),
        };
        CniError::new(Code::Decode, format!("{field}: {}", e.inner()))
    })
}

fn invalid(field: &str, value: &str, reason: impl std::fmt::Display) -> CniError {
    CniError::new(Code::InvalidConfig, format!("{field}: {value:?}: {reason}"))
}

fn required(field: &str, why: &str) -> CniError {
    CniError::new(Code::InvalidConfig, format!("{field}: is required{why}"))
}

// ---- the common part: what every command needs ---------------------------------------------

#[derive(Deserialize)]
struct CommonWire {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    ipam: Option<CommonIpamWire>,
}

#[derive(Deserialize)]
struct CommonIpamWire {
    #[serde(default, rename = "dataDir")]
    data_dir: Option<String>,
    #[serde(default)]
    store: Option<Value>,
}

#[derive(Deserialize)]
#[serde(expecting = "an object with `level` and `file`")]
struct LogWire {
    #[serde(default)]
    level: Option<String>,
    #[serde(default)]
    file: Option<String>,
}

/// What every command but VERSION needs: the network and where its store is. (Logging is
/// apart, in [`log_config`]: no command needs it to do its work.)
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetConf {
    /// The request's version, in which results and errors are written.
    pub version: CniVersion,
    /// The network's `name`.
    pub name: String,
    /// `ipam.dataDir`.
    pub data_dir: PathBuf,
    /// `ipam.store`.
    pub store: StoreChoice,
}

impl NetConf {
    /// Reads the common part of a decoded configuration.
    pub fn parse(conf: &Value, version: CniVersion) -> Result<NetConf, CniError> {
        let wire: CommonWire = typed(conf, "")?;
        let name = wire
            .name
            .filter(|n| !n.is_empty())
            .ok_or_else(|| required("name", ": the network's name"))?;
        let ipam = wire.ipam.ok_or_else(|| {
            required(
                "ipam",
                ": the plugin's section of the network configuration",
            )
        })?;
        let data_dir = match ipam.data_dir {
            None => PathBuf::from(DEFAULT_DATA_DIR),
            Some(d) if d.starts_with('/') => PathBuf::from(d),
            Some(d) => {
                return Err(invalid(
                    "ipam.dataDir",
                    &d,
                    "must be an absolute path (the runtime's working directory is arbitrary)",
                ))
            }
        };
        let store = match ipam.store {
            None | Some(Value::Null) => StoreChoice::Redb,
            Some(v) => store_choice(&v)?,
        };
        Ok(NetConf {
            version,
            name,
            data_dir,
            store,
        })
    }
}

/// Reads `ipam.log` (absent: the default). Kept out of [`NetConf`] so that a command can go
/// on without it: a log setting is no reason to keep an address from being released.
///
/// ```
/// use ipam_cni::cni::config::log_config;
/// use ipam_cni::cni::log::Level;
/// let conf = serde_json::json!({"ipam": {"log": {"level": "info"}}});
/// assert_eq!(log_config(&conf).unwrap().level, Level::Info);
/// let bad = serde_json::json!({"ipam": {"log": {"level": "loud"}}});
/// assert_eq!(log_config(&bad).unwrap_err().code().number(), 7);
/// ```
pub fn log_config(conf: &Value) -> Result<LogConfig, CniError> {
    let mut log = LogConfig::default();
    let Some(section) = conf
        .get("ipam")
        .and_then(|i| i.get("log"))
        .filter(|l| !l.is_null())
    else {
        return Ok(log);
    };
    let wire: LogWire = typed(section, "ipam.log")?;
    if let Some(text) = wire.level {
        log.level = Level::parse(&text).ok_or_else(|| {
            invalid(
                "ipam.log.level",
                &text,
                "must be one of off, error, warn, info, debug",
            )
        })?;
    }
    if let Some(file) = wire.file {
        if !file.starts_with('/') {
            return Err(invalid("ipam.log.file", &file, "must be an absolute path"));
        }
        log.file = Some(PathBuf::from(file));
    }
    Ok(log)
}

/// `ipam.store`. Every kind the contract names is recognised, and one this build lacks is
/// refused here, as a configuration mistake, rather than when the store is opened.
fn store_choice(v: &Value) -> Result<StoreChoice, CniError> {
    const EXPECTED: &str = r#"must be "redb", "sled" or {"kubernetes": {"kubeconfig": PATH, "nodeName": NAME, "namespace": NS}}"#;
    let not_built = |field: &str, e: store::NotBuilt| {
        CniError::new(Code::InvalidConfig, format!("{field}: {e}"))
    };
    match v {
        Value::String(s) if s == "redb" => Ok(StoreChoice::Redb),
        Value::String(s) if s == "sled" => {
            store::sled(Syntax::Json).map_err(|e| not_built("ipam.store", e))
        }
        Value::String(s) => Err(invalid("ipam.store", s, EXPECTED)),
        Value::Object(map) if map.len() == 1 && map.contains_key("kubernetes") => {
            #[derive(Deserialize)]
            #[serde(deny_unknown_fields, rename_all = "camelCase")]
            struct Kube {
                #[serde(default)]
                kubeconfig: Option<String>,
                #[serde(default)]
                node_name: Option<String>,
                #[serde(default)]
                namespace: Option<String>,
                #[serde(default)]
                api: Option<String>,
            }
            let k: Kube = typed(&map["kubernetes"], "ipam.store.kubernetes")?;
            let api = match k.api.as_deref() {
                None => ipam_api::Api::default(),
                Some(name) => name.parse().map_err(|e: ipam_api::UnknownApi| {
                    invalid(
                        "ipam.store.kubernetes.api",
                        &e.value,
                        r#"must be "ipam.rs" or "spiderpool""#,
                    )
                })?,
            };
            if let Some(path) = k.kubeconfig.as_deref().filter(|p| !p.starts_with('/')) {
                return Err(invalid(
                    "ipam.store.kubernetes.kubeconfig",
                    path,
                    "must be an absolute path",
                ));
            }
            let choice = store::KubeChoice {
                kubeconfig: k.kubeconfig.map(PathBuf::from),
                node: k.node_name.filter(|n| !n.is_empty()),
                namespace: k.namespace.filter(|n| !n.is_empty()),
                api,
            };
            store::kubernetes(choice, Syntax::Json)
                .map_err(|e| not_built("ipam.store.kubernetes", e))
        }
        other => Err(invalid("ipam.store", &other.to_string(), EXPECTED)),
    }
}

// ---- the allocation plan: ADD, CHECK and STATUS --------------------------------------------

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
#[serde(rename_all = "camelCase")]
struct RangeWire {
    #[serde(default)]
    subnet: Option<String>,
    #[serde(default)]
    range_start: Option<String>,
    #[serde(default)]
    range_end: Option<String>,
    #[serde(default)]
    gateway: Option<String>,
}

#[derive(Deserialize)]
struct IpPoolsWire {
    #[serde(default)]
    ipv4: Option<Vec<String>>,
    #[serde(default)]
    ipv6: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct RouteWire {
    #[serde(default)]
    dst: Option<String>,
    #[serde(default)]
    gw: Option<String>,
    /// 1.1.0's `mtu`, `advmss`, `priority`, `table`, `scope`: passed through as written.
    #[serde(flatten)]
    extra: Map<String, Value>,
}

#[derive(Deserialize)]
struct DnsWire {
    #[serde(default)]
    nameservers: Option<Vec<String>>,
    #[serde(default)]
    domain: Option<String>,
    #[serde(default)]
    search: Option<Vec<String>>,
    #[serde(default)]
    options: Option<Vec<String>>,
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
    fn new(field: String, family: Family, pools: Vec<ObjectName>, origin: SlotOrigin) -> Self {
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
        let mut slots = Vec::new();
        let mut inline_pools = Vec::new();

        let ranges = ipam.ranges.unwrap_or_default();
        if !ranges.is_empty() {
            ObjectName::new(net.name.as_str()).map_err(|e| {
                invalid(
                    "name",
                    &net.name,
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
                    format!("{}-{i}", net.name)
                } else {
                    format!("{}-{i}-{j}", net.name)
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

/// A requested address: bare, or with a prefix length as host-local accepts
/// (`10.6.0.5/16`; the length is checked but otherwise ignored).
fn requested_addr(field: &str, text: &str) -> Result<IpAddr, CniError> {
    let (addr_text, prefix) = match text.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (text, None),
    };
    let addr = parse_addr(addr_text).map_err(|e| invalid(field, text, e.kind()))?;
    if let Some(p) = prefix {
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        if !p.parse::<u8>().is_ok_and(|n| n <= bits) || p.starts_with('+') {
            return Err(invalid(field, text, AddrErrorKind::BadPrefix));
        }
    }
    Ok(addr)
}

fn route(k: usize, r: RouteWire) -> Result<Route, CniError> {
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

fn dns(d: DnsWire) -> Result<Dns, CniError> {
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

// ---- CHECK and GC inputs --------------------------------------------------------------------

#[derive(Deserialize)]
struct PrevResultWire {
    #[serde(default)]
    ips: Option<Vec<PrevIpWire>>,
}

#[derive(Deserialize)]
struct PrevIpWire {
    address: String,
}

/// The addresses of `prevResult` (CHECK), if the configuration has one.
pub fn prev_result_addresses(conf: &Value) -> Result<Option<Vec<IpAddr>>, CniError> {
    let Some(prev) = conf.get("prevResult").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let wire: PrevResultWire = typed(prev, "prevResult")?;
    let mut out = Vec::new();
    for (k, ip) in wire.ips.unwrap_or_default().iter().enumerate() {
        let field = format!("prevResult.ips[{k}].address");
        out.push(requested_addr(&field, &ip.address)?);
    }
    Ok(Some(out))
}

#[derive(Deserialize)]
struct AttachmentWire {
    #[serde(rename = "containerID")]
    container_id: String,
    ifname: String,
}

/// The owners of `cni.dev/valid-attachments` (GC); libcni also writes the same list as
/// `cni.dev/attachments`, which is read when the first is absent. The list is required: GC
/// without it would release the whole network.
pub fn valid_attachments(conf: &Value) -> Result<BTreeSet<Owner>, CniError> {
    let (key, list) = ["cni.dev/valid-attachments", "cni.dev/attachments"]
        .into_iter()
        .find_map(|k| conf.get(k).filter(|v| !v.is_null()).map(|v| (k, v)))
        .ok_or_else(|| {
            required(
                "cni.dev/valid-attachments",
                " for GC: the attachments to keep (an empty list releases the whole network)",
            )
        })?;
    let wire: Vec<AttachmentWire> = typed(list, key)?;
    let mut owners = BTreeSet::new();
    for (k, a) in wire.into_iter().enumerate() {
        // An attachment that is not a valid owner cannot hold anything in the store; it is
        // skipped rather than failing the whole GC.
        match Owner::new(a.container_id, a.ifname) {
            Ok(o) => {
                owners.insert(o);
            }
            Err(e) => log::warn!("{key}[{k}]: {e}; ignored"),
        }
    }
    Ok(owners)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn net() -> NetConf {
        NetConf {
            version: CniVersion::V1_1_0,
            name: "net1".into(),
            data_dir: PathBuf::from("/tmp/x"),
            store: StoreChoice::Redb,
        }
    }

    /// Parses an `ipam` section (plus top-level extras) and renders the plan or the error.
    fn plan(ipam: Value, extra: Value, args: &str) -> String {
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

    fn check(ipam: Value, expect: &str) {
        assert_eq!(plan(ipam.clone(), json!({}), ""), expect, "{ipam}");
    }

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

    #[test]
    fn common_part_is_validated() {
        let parse = |conf: Value| match NetConf::parse(&conf, CniVersion::V1_1_0) {
            Ok(n) => format!("{} {} {:?}", n.name, n.data_dir.display(), n.store),
            Err(e) => format!("{}: {}", e.code(), e.msg()),
        };
        assert_eq!(
            parse(json!({"name": "n", "ipam": {}})),
            "n /var/lib/cni/ipam-cni Redb"
        );
        assert_eq!(
            parse(json!({"name": "n", "ipam": {"dataDir": "/d", "store": "sled"}})),
            "n /d Sled"
        );
        assert_eq!(
            parse(
                json!({"name": "n", "ipam": {"store": {"kubernetes": {"kubeconfig": "/k", "nodeName": "w1"}}}})
            ),
            r#"n /var/lib/cni/ipam-cni Kubernetes(KubeChoice { kubeconfig: Some("/k"), node: Some("w1"), namespace: None, api: IpamRs })"#
        );
        assert_eq!(
            parse(json!({"name": "n", "ipam": {"store": {"kubernetes": {}}}})),
            "n /var/lib/cni/ipam-cni Kubernetes(KubeChoice { kubeconfig: None, node: None, namespace: None, api: IpamRs })"
        );
        assert_eq!(
            parse(json!({"name": "n", "ipam": {"store": {"kubernetes": {"api": "spiderpool"}}}})),
            "n /var/lib/cni/ipam-cni Kubernetes(KubeChoice { kubeconfig: None, node: None, namespace: None, api: Spiderpool })"
        );
        assert_eq!(
            parse(json!({"name": "n", "ipam": {"store": {"kubernetes": {"api": "ipam.rs"}}}})),
            "n /var/lib/cni/ipam-cni Kubernetes(KubeChoice { kubeconfig: None, node: None, namespace: None, api: IpamRs })"
        );
        assert_eq!(
            parse(
                json!({"name": "n", "ipam": {"store": {"kubernetes": {"api": "spiderpool.spidernet.io/v2beta1"}}}})
            ),
            r#"7: ipam.store.kubernetes.api: "spiderpool.spidernet.io/v2beta1": must be "ipam.rs" or "spiderpool""#
        );
        assert_eq!(
            parse(json!({"name": "n", "ipam": {"store": {"kubernetes": {"api": 4}}}})),
            "6: ipam.store.kubernetes.api: invalid type: integer `4`, expected a string"
        );
        assert_eq!(
            parse(json!({"name": "n", "ipam": {"store": {"kubernetes": {"kubeconfig": "k"}}}})),
            r#"7: ipam.store.kubernetes.kubeconfig: "k": must be an absolute path"#
        );
        assert_eq!(
            parse(json!({"name": "n", "ipam": {"store": "etcd"}})),
            r#"7: ipam.store: "etcd": must be "redb", "sled" or {"kubernetes": {"kubeconfig": PATH, "nodeName": NAME, "namespace": NS}}"#
        );
        assert_eq!(
            parse(json!({"name": "n", "ipam": {"dataDir": "rel/dir"}})),
            r#"7: ipam.dataDir: "rel/dir": must be an absolute path (the runtime's working directory is arbitrary)"#
        );
        assert_eq!(
            parse(json!({"name": "n", "ipam": {"dataDir": 5}})),
            "6: ipam.dataDir: invalid type: integer `5`, expected a string"
        );
        assert_eq!(
            parse(json!({"ipam": {}})),
            "7: name: is required: the network's name"
        );
        assert_eq!(
            parse(json!({"name": "n"})),
            "7: ipam: is required: the plugin's section of the network configuration"
        );
        // Logging is read apart, so that DEL and GC can go on without it.
        assert_eq!(
            parse(json!({"name": "n", "ipam": {"log": {"level": "loud"}}})),
            "n /var/lib/cni/ipam-cni Redb"
        );
    }

    #[test]
    fn log_settings_are_validated() {
        let log = |l: Value| match log_config(&json!({"name": "n", "ipam": {"log": l}})) {
            Ok(c) => format!("{} {:?}", c.level, c.file),
            Err(e) => format!("{}: {}", e.code(), e.msg()),
        };
        assert_eq!(log(Value::Null), "WARN None");
        assert_eq!(
            log(json!({"level": "debug", "file": "/l"})),
            r#"DEBUG Some("/l")"#
        );
        assert_eq!(
            log(json!({"level": "loud"})),
            r#"7: ipam.log.level: "loud": must be one of off, error, warn, info, debug"#
        );
        assert_eq!(
            log(json!({"file": "l"})),
            r#"7: ipam.log.file: "l": must be an absolute path"#
        );
        assert_eq!(
            log(json!({"level": 5})),
            "6: ipam.log.level: invalid type: integer `5`, expected a string"
        );
        assert_eq!(
            log(json!("debug")),
            r#"6: ipam.log: invalid type: string "debug", expected an object with `level` and `file`"#
        );
    }

    #[test]
    fn stdin_and_version_are_checked_first() {
        let code = |b: &[u8]| {
            decode_stdin(b)
                .map(|_| 0)
                .unwrap_or_else(|e| e.code().number())
        };
        assert_eq!(code(b"{}"), 0);
        assert_eq!(code(b""), 6);
        assert_eq!(code(b"[1]"), 6);
        assert_eq!(code(b"{\"a\":"), 6);
        assert_eq!(code(&vec![b' '; MAX_STDIN_BYTES + 1]), 6);
        let deep = "[".repeat(10_000);
        assert_eq!(code(deep.as_bytes()), 6);
        let v = |c: Value| {
            version_of(&c)
                .map(|v| v.to_string())
                .unwrap_or_else(|e| format!("{}: {}", e.code(), e.msg()))
        };
        assert_eq!(v(json!({"cniVersion": "0.4.0"})), "0.4.0");
        assert_eq!(
            v(json!({"cniVersion": "0.2.0"})),
            r#"1: cniVersion: "0.2.0": not supported; this plugin supports 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0"#
        );
        assert_eq!(
            v(json!({})),
            "1: cniVersion is missing; this plugin supports 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0"
        );
        assert_eq!(
            v(json!({"cniVersion": 1})),
            "6: cniVersion: expected a string, found 1"
        );
    }

    #[test]
    fn gc_needs_its_list() {
        let owners = valid_attachments(&json!({"cni.dev/valid-attachments": [
            {"containerID": "a", "ifname": "eth0"}, {"containerID": "../x", "ifname": "eth0"}]}))
        .unwrap();
        assert_eq!(owners.len(), 1);
        let fallback = valid_attachments(
            &json!({"cni.dev/attachments": [{"containerID": "b", "ifname": "net1"}]}),
        )
        .unwrap();
        assert_eq!(fallback.iter().next().unwrap().to_string(), "b/net1");
        assert_eq!(
            valid_attachments(&json!({})).unwrap_err().code().number(),
            7
        );
        assert_eq!(
            valid_attachments(&json!({"cni.dev/valid-attachments": [{"containerID": 1}]}))
                .unwrap_err()
                .code()
                .number(),
            6
        );
    }
}
