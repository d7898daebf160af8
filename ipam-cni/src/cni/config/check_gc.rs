//! CHECK's and GC's inputs besides the network: the addresses of `prevResult`, and the
//! attachments GC keeps.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipam_core::Owner;
use serde::Deserialize;
use serde_json::Value;

use super::fields::{requested_addr, required, typed};
use crate::cni::error::CniError;

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
