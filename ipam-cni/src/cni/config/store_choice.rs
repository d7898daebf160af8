//! `ipam.store`: which backend holds the state, and where. Every kind the contract names is
//! recognised; one this build lacks is refused here, as a configuration mistake (code 7).

use std::path::PathBuf;

use ipam_store::{self as store, Quoting, StoreChoice};
use serde::Deserialize;
use serde_json::Value;

use super::fields::{invalid, typed};
use crate::cni::error::{CniError, Code};

/// `ipam.store`. Every kind the contract names is recognised, and one this build lacks is
/// refused here, as a configuration mistake, rather than when the store is opened.
pub(super) fn store_choice(v: &Value) -> Result<StoreChoice, CniError> {
    const EXPECTED: &str = r#"must be "redb", "sled" or {"kubernetes": {"kubeconfig": PATH, "nodeName": NAME, "namespace": NS}}"#;
    let not_built = |field: &str, e: store::NotBuilt| {
        CniError::new(Code::InvalidConfig, format!("{field}: {e}"))
    };
    match v {
        Value::String(s) if s == "redb" => Ok(StoreChoice::Redb),
        Value::String(s) if s == "sled" => {
            store::sled(Quoting::Quoted).map_err(|e| not_built("ipam.store", e))
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
            store::kubernetes(choice, Quoting::Quoted)
                .map_err(|e| not_built("ipam.store.kubernetes", e))
        }
        other => Err(invalid("ipam.store", &other.to_string(), EXPECTED)),
    }
}

#[cfg(test)]
mod tests {
    use crate::cni::config::net::tests::parse;
    use serde_json::json;

    #[test]
    fn store_choices_are_validated() {
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
    }
}
