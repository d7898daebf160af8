//! What every command but VERSION needs: the network's `name` and where its store is
//! (`ipam.dataDir`, and `ipam.store`, read by `store_choice`).

use std::path::PathBuf;

use ipam_store::{StoreChoice, DEFAULT_DATA_DIR};
use serde::Deserialize;
use serde_json::Value;

use super::fields::{invalid, required, typed};
use super::store_choice::store_choice;
use crate::cni::error::CniError;
use crate::cni::version::CniVersion;

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
    #[serde(default, rename = "keepStatefulSetAddresses")]
    keep_statefulset_addresses: Option<Value>,
}

/// What every command but VERSION needs: the network and where its store is. (Logging is
/// apart, in [`log_config`](super::log_config): no command needs it to do its work.)
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
    /// `ipam.keepStatefulSetAddresses` (default true): on a store that knows Pods
    /// (Kubernetes), a StatefulSet Pod's address is kept for its identity across DEL and ADD
    /// while the StatefulSet wants the Pod.
    pub keep_statefulset_addresses: bool,
    /// `ipam.agent`: the node agent's socket, and whether it was named (then its absence is
    /// worth a log line) or is the default (used only when it exists).
    pub agent: AgentSocket,
}

/// Where the plugin looks for the node agent (`ipam.agent`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentSocket {
    /// Not given: the DaemonSet's socket ([`DEFAULT_AGENT_SOCKET`]), used when it exists.
    Default,
    /// Given as a path: used when it exists, and its absence is logged.
    Named(PathBuf),
    /// Given as `""`: every call is made directly on the store.
    Never,
}

impl AgentSocket {
    /// The socket to try, if any.
    pub fn path(&self) -> Option<&std::path::Path> {
        match self {
            AgentSocket::Default => Some(std::path::Path::new(DEFAULT_AGENT_SOCKET)),
            AgentSocket::Named(p) => Some(p),
            AgentSocket::Never => None,
        }
    }
}

/// `ipam.agent`: an absolute path, or `""` for none; absent: the default socket.
pub fn agent_socket(conf: &Value) -> Result<AgentSocket, CniError> {
    let Some(value) = conf.get("ipam").and_then(|i| i.get("agent")) else {
        return Ok(AgentSocket::Default);
    };
    let path: String = typed(value, "ipam.agent")?;
    match path {
        p if p.is_empty() => Ok(AgentSocket::Never),
        p if p.starts_with('/') => Ok(AgentSocket::Named(PathBuf::from(p))),
        p => Err(invalid(
            "ipam.agent",
            &p,
            "must be an absolute path (the node agent's socket), or \"\" for none",
        )),
    }
}

/// The socket the DaemonSet's `ipam-agent` serves on each node.
pub const DEFAULT_AGENT_SOCKET: &str = "/run/ipam-rs/agent.sock";

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
        let keep_statefulset_addresses = match ipam.keep_statefulset_addresses {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => b,
            Some(v) => {
                return Err(invalid(
                    "ipam.keepStatefulSetAddresses",
                    &match v {
                        Value::String(text) => text,
                        other => other.to_string(),
                    },
                    "must be true or false",
                ))
            }
        };
        Ok(NetConf {
            version,
            name,
            data_dir,
            store,
            keep_statefulset_addresses,
            // Read apart ([`agent_socket`]), so that DEL and GC can go on without it.
            agent: AgentSocket::Default,
        })
    }
}

#[cfg(test)]
pub(in crate::cni::config) mod tests {
    //! Also the harness of `store_choice`'s tests.

    use super::*;
    use serde_json::json;

    /// Reads the common part of `conf`, rendered as one line.
    pub(in crate::cni::config) fn parse(conf: Value) -> String {
        match NetConf::parse(&conf, CniVersion::V1_1_0) {
            Ok(n) => format!("{} {} {:?}", n.name, n.data_dir.display(), n.store),
            Err(e) => format!("{}: {}", e.code(), e.msg()),
        }
    }

    #[test]
    fn common_part_is_validated() {
        assert_eq!(
            parse(json!({"name": "n", "ipam": {}})),
            "n /var/lib/cni/ipam-cni Redb"
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
        assert_eq!(
            parse(json!({"name": "n", "ipam": {"keepStatefulSetAddresses": "no"}})),
            r#"7: ipam.keepStatefulSetAddresses: "no": must be true or false"#
        );
        let off = NetConf::parse(
            &json!({"name": "n", "ipam": {"keepStatefulSetAddresses": false}}),
            CniVersion::V1_1_0,
        );
        assert!(!off.unwrap().keep_statefulset_addresses);
        let default = NetConf::parse(&json!({"name": "n", "ipam": {}}), CniVersion::V1_1_0);
        assert!(default.unwrap().keep_statefulset_addresses);
        let agent = |conf: Value| match agent_socket(&conf) {
            Ok(a) => format!("{a:?}"),
            Err(e) => format!("{}: {}", e.code(), e.msg()),
        };
        assert_eq!(
            agent(json!({"ipam": {"agent": "run/agent.sock"}})),
            r#"7: ipam.agent: "run/agent.sock": must be an absolute path (the node agent's socket), or "" for none"#
        );
        assert_eq!(
            agent(json!({"ipam": {"agent": 1}})),
            "6: ipam.agent: invalid type: integer `1`, expected a string"
        );
        assert_eq!(agent(json!({"ipam": {}})), "Default");
        assert_eq!(agent(json!({"ipam": {"agent": ""}})), "Never");
        assert_eq!(
            agent(json!({"ipam": {"agent": "/a.sock"}})),
            r#"Named("/a.sock")"#
        );
        // The agent is read apart too: a bad one does not stop the common part.
        assert_eq!(
            parse(json!({"name": "n", "ipam": {"agent": 1}})),
            "n /var/lib/cni/ipam-cni Redb"
        );
        // Logging is read apart, so that DEL and GC can go on without it.
        assert_eq!(
            parse(json!({"name": "n", "ipam": {"log": {"level": "loud"}}})),
            "n /var/lib/cni/ipam-cni Redb"
        );
    }
}
