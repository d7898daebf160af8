//! What `ipamctl get` prints: kubectl-style tables, and the JSON/YAML shapes of objects.
//!
//! ```
//! use ipamctl::output::Table;
//! let mut t = Table::new(&["NAME", "TOTAL"]);
//! t.row(vec!["test-ippool".into(), "3".into()]);
//! assert_eq!(t.render(), "NAME          TOTAL\ntest-ippool   3\n");
//! ```

use std::str::FromStr;

use ipam_controller::leak::Leak;
use ipam_core::{Allocation, IpPool, PoolCounts, ReservedIp};
use serde::Serialize;

/// The `-o` formats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// The table.
    #[default]
    Table,
    /// The table with more columns.
    Wide,
    /// JSON, indented, as `kubectl get -o json`.
    Json,
    /// YAML, as `kubectl get -o yaml`.
    Yaml,
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Format, String> {
        match s {
            "wide" => Ok(Format::Wide),
            "json" => Ok(Format::Json),
            "yaml" => Ok(Format::Yaml),
            other => Err(format!(
                "unknown output format {other:?}; allowed: wide, json, yaml"
            )),
        }
    }
}

/// A table as kubectl prints one: a header of upper-case names, left-aligned columns three
/// spaces apart, no trailing spaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// An empty table with these column names.
    pub fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; it must have one cell per column.
    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.headers.len());
        self.rows.push(cells);
    }

    /// Whether the table has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text, every line ending in a newline.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for line in std::iter::once(&self.headers).chain(&self.rows) {
            let mut text = String::new();
            for (i, cell) in line.iter().enumerate() {
                text.push_str(cell);
                if i + 1 < line.len() {
                    let pad = widths[i] - cell.chars().count() + 3;
                    text.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        }
        out
    }
}

/// kubectl's placeholder for an empty cell.
pub const NONE: &str = "<none>";

/// The pools table: NAME, VERSION, SUBNET, TOTAL, RESERVED, ALLOCATED, AVAILABLE; `wide` adds
/// GATEWAY, DEFAULT and IPS.
pub fn pools_table(pools: &[(IpPool, PoolCounts)], wide: bool) -> Table {
    let mut headers = vec![
        "NAME",
        "VERSION",
        "SUBNET",
        "TOTAL",
        "RESERVED",
        "ALLOCATED",
        "AVAILABLE",
    ];
    if wide {
        headers.extend(["GATEWAY", "DEFAULT", "IPS"]);
    }
    let mut t = Table::new(&headers);
    for (pool, c) in pools {
        let mut row = vec![
            pool.name().to_string(),
            pool.family().version().to_string(),
            pool.subnet().to_string(),
            c.total.to_string(),
            c.reserved.to_string(),
            c.allocated.to_string(),
            c.available.to_string(),
        ];
        if wide {
            row.push(
                pool.gateway()
                    .map(|g| g.to_string())
                    .unwrap_or_else(|| NONE.into()),
            );
            row.push(pool.is_default().to_string());
            row.push(pool.spec().ips.join(","));
        }
        t.row(row);
    }
    t
}

/// The ReservedIPs table: NAME, VERSION, COUNT (addresses covered); `wide` adds IPS.
pub fn reserved_table(reserved: &[ReservedIp], wide: bool) -> Table {
    let mut headers = vec!["NAME", "VERSION", "COUNT"];
    if wide {
        headers.push("IPS");
    }
    let mut t = Table::new(&headers);
    for r in reserved {
        let mut row = vec![
            r.name().to_string(),
            r.family()
                .map(|f| f.version().to_string())
                .unwrap_or_else(|| NONE.into()),
            r.addresses().len().to_string(),
        ];
        if wide {
            let ips = r.spec().ips.join(",");
            row.push(if ips.is_empty() { NONE.into() } else { ips });
        }
        t.row(row);
    }
    t
}

/// The allocations table: ADDRESS, POOL, NETWORK, CONTAINER-ID, IFNAME, POD
/// (`namespace/name`); `wide` adds POD-UID, NODE (the node whose plugin took it) and
/// HELD-FOR (why it is held: [`ipam_core::HeldFor`]).
pub fn allocations_table(allocations: &[Allocation], wide: bool) -> Table {
    let mut headers = vec![
        "ADDRESS",
        "POOL",
        "NETWORK",
        "CONTAINER-ID",
        "IFNAME",
        "POD",
    ];
    if wide {
        headers.extend(["POD-UID", "NODE", "HELD-FOR"]);
    }
    let mut t = Table::new(&headers);
    for a in allocations {
        let mut row = vec![
            a.address.to_string(),
            a.pool.to_string(),
            a.network.clone(),
            a.owner.container_id().to_owned(),
            a.owner.ifname().to_owned(),
            a.pod
                .as_ref()
                .map(|p| p.to_string())
                .unwrap_or_else(|| NONE.into()),
        ];
        if wide {
            row.push(
                a.pod
                    .as_ref()
                    .and_then(|p| p.uid.clone())
                    .unwrap_or_else(|| NONE.into()),
            );
            row.push(
                a.node
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_else(|| NONE.into()),
            );
            row.push(a.held_for().to_string());
        }
        t.row(row);
    }
    t
}

/// A pool and its counts as printed: the IPPool document, `apiVersion` always ours
/// whatever the object was applied as, the spec as stored (Spiderpool-only fields were
/// dropped on apply), the counts as its status.
pub fn pool_out(pool: &IpPool, c: &PoolCounts) -> ipam_api::IPPool {
    ipam_api::IPPool::of(pool, c)
}

/// A ReservedIP as printed, with the number of addresses it covers as its status.
pub fn reserved_out(r: &ReservedIp) -> ipam_api::ReservedIP {
    ipam_api::ReservedIP::of(r)
}

/// Several objects, as kubectl prints a list.
pub use ipam_api::List as ListOut;

/// One allocation, flat, as the contract prints it; pod fields only where known.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AllocationOut {
    /// The address.
    pub address: String,
    /// The pool.
    pub pool: String,
    /// The network (CNI `name`).
    pub network: String,
    /// The owner's container ID.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// The owner's interface.
    pub ifname: String,
    /// The Pod's namespace.
    #[serde(rename = "podNamespace", skip_serializing_if = "Option::is_none")]
    pub pod_namespace: Option<String>,
    /// The Pod's name.
    #[serde(rename = "podName", skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    /// The Pod's UID.
    #[serde(rename = "podUID", skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
    /// The node whose plugin took it, where nodes share the store.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Why it is held: `pod`, `statefulSetPod`, `statefulSetIdentity` (no sandbox: kept
    /// for the Pod's next), `noPod`.
    #[serde(rename = "heldFor")]
    pub held_for: &'static str,
    /// The StatefulSet of the Pod, where it has one.
    #[serde(rename = "statefulSet", skip_serializing_if = "Option::is_none")]
    pub statefulset: Option<String>,
}

impl From<&Allocation> for AllocationOut {
    fn from(a: &Allocation) -> AllocationOut {
        AllocationOut {
            address: a.address.to_string(),
            pool: a.pool.to_string(),
            network: a.network.clone(),
            container_id: a.owner.container_id().to_owned(),
            ifname: a.owner.ifname().to_owned(),
            pod_namespace: a.pod.as_ref().and_then(|p| p.namespace.clone()),
            pod_name: a.pod.as_ref().map(|p| p.name.clone()),
            pod_uid: a.pod.as_ref().and_then(|p| p.uid.clone()),
            node: a.node.as_ref().map(ToString::to_string),
            held_for: a.held_for().code(),
            statefulset: a.pod.as_ref().and_then(|p| p.statefulset.clone()),
        }
    }
}

/// Allocations as printed: `{"items": [...]}`, always a list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AllocationsOut {
    /// The allocations, in pool and address order.
    pub items: Vec<AllocationOut>,
}

/// The leaked allocations table of `gc --dry-run`: ADDRESS, POOL, NETWORK, POD, REASON;
/// `wide` adds CONTAINER-ID, IFNAME, POD-UID and NODE (the node whose plugin took it).
pub fn leaks_table(leaks: &[(&Allocation, Leak)], wide: bool) -> Table {
    let mut headers = vec!["ADDRESS", "POOL", "NETWORK", "POD", "REASON"];
    if wide {
        headers.extend(["CONTAINER-ID", "IFNAME", "POD-UID", "NODE"]);
    }
    let mut t = Table::new(&headers);
    for (a, why) in leaks {
        let pod = a.pod.as_ref();
        let mut row = vec![
            a.address.to_string(),
            a.pool.to_string(),
            a.network.clone(),
            pod.map(|p| p.to_string()).unwrap_or_else(|| NONE.into()),
            why.to_string(),
        ];
        if wide {
            row.extend([
                a.owner.container_id().to_owned(),
                a.owner.ifname().to_owned(),
                pod.and_then(|p| p.uid.clone())
                    .unwrap_or_else(|| NONE.into()),
                a.node
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_else(|| NONE.into()),
            ]);
        }
        t.row(row);
    }
    t
}

/// One leaked allocation as `gc --dry-run -o json` prints it: the allocation's flat fields,
/// `reason` (`podGone`, `otherPod`, `finished`, `nodeGone`) with its details, and `message`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LeakOut {
    /// The allocation.
    #[serde(flatten)]
    pub allocation: AllocationOut,
    /// Why it is leaked.
    #[serde(flatten)]
    pub leak: Leak,
    /// The reason as a sentence.
    pub message: String,
}

/// Leaked allocations as printed: `{"items": [...]}`, always a list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LeaksOut {
    /// The leaks, in pool and address order.
    pub items: Vec<LeakOut>,
}

/// Renders `value` as JSON (two-space indented, as kubectl) or YAML, ending in a newline.
pub fn render<T: Serialize>(value: &T, format: Format) -> Result<String, String> {
    match format {
        Format::Yaml => serde_yaml_ng::to_string(value).map_err(|e| e.to_string()),
        _ => serde_json::to_string_pretty(value)
            .map(|mut s| {
                s.push('\n');
                s
            })
            .map_err(|e| e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_like_kubectl() {
        let mut t = Table::new(&["NAME", "VERSION", "SUBNET"]);
        t.row(vec!["a".into(), "4".into(), "10.6.0.0/16".into()]);
        t.row(vec!["long-name".into(), "6".into(), "fd00::/64".into()]);
        assert_eq!(
            t.render(),
            "NAME        VERSION   SUBNET\n\
             a           4         10.6.0.0/16\n\
             long-name   6         fd00::/64\n"
        );
        // No trailing spaces when the last cell is short.
        let mut t = Table::new(&["A", "LONGER"]);
        t.row(vec!["x".into(), "".into()]);
        assert_eq!(t.render(), "A   LONGER\nx\n");
    }

    #[test]
    fn formats_parse() {
        assert_eq!("wide".parse::<Format>(), Ok(Format::Wide));
        assert_eq!("json".parse::<Format>(), Ok(Format::Json));
        assert_eq!("yaml".parse::<Format>(), Ok(Format::Yaml));
        assert!("xml".parse::<Format>().unwrap_err().contains("\"xml\""));
    }
}
