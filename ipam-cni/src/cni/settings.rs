//! Routes and DNS: what a network configuration gives (`ipam.routes`, `ipam.dns`) and an
//! ADD result carries, with the routes of the pools. Apart from both the configuration
//! reader and the result printer, so that neither depends on the other.
//!
//! Fields are written in sorted order, as results have always been (see [`super::result`]).

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::Value;

/// A route of the result: from `ipam.routes` (with 1.1.0's `mtu`, `advmss`, `priority`,
/// `table`, `scope`, or anything else, passed through as written) or from a pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The destination.
    pub dst: IpNet,
    /// The next hop, if any.
    pub gw: Option<IpAddr>,
    /// Other fields of a configured route, passed through.
    pub extra: BTreeMap<String, Value>,
}

impl Serialize for Route {
    /// All keys in sorted order, `dst` and `gw` among the passed-through ones, as routes
    /// have always been written.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let dst = self.dst.to_string();
        let gw = self.gw.map(|g| g.to_string());
        let mut own = [("dst", Some(dst)), ("gw", gw)]
            .into_iter()
            .filter_map(|(k, v)| Some((k, v?)))
            .peekable();
        let mut map = s.serialize_map(Some(2 + self.extra.len()))?;
        for (key, value) in &self.extra {
            while let Some((k, v)) = own.next_if(|(k, _)| *k < key.as_str()) {
                map.serialize_entry(k, &v)?;
            }
            map.serialize_entry(key, value)?;
        }
        for (k, v) in own {
            map.serialize_entry(k, &v)?;
        }
        map.end()
    }
}

/// `dns`, as configured (every field as written).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Dns {
    /// `domain`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// `nameservers`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nameservers: Option<Vec<String>>,
    /// `options`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<Vec<String>>,
    /// `search`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search: Option<Vec<String>>,
}
