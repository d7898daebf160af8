//! The manifests of `deploy/` on a real API server, installed the way docs/kubernetes.md says:
//! `kubectl apply` of the CRDs, the RBAC and the DaemonSet; the seed's Spiderpool manifests,
//! changed only in `apiVersion` and `kind`, applied with kubectl too; and the permissions of
//! the plugin's ServiceAccount and of the `ipam-rs-operator` ClusterRole checked twice: with
//! `kubectl auth can-i` for each verb the store sends (and a few it must not be granted), and
//! by running the store's operations under those identities, the plugin's through the very
//! kubeconfig that `deploy/install-cni.sh` writes.
//!
//! The cluster is the one `IPAM_TEST_KUBECONFIG` names (cluster-admin; see the testenv
//! scripts). Without it the tests say so and pass, except under `CI=true`, where a missing
//! cluster is a failure. kubectl is `IPAM_TEST_KUBECTL`, else `kubectl` on `PATH` (Debian 12:
//! `apt-get install kubernetes-client`, v1.20.2 like the test API server).
//!
//! The objects go where an installation puts them (namespace `ipam-rs`, cluster-scoped
//! objects without a prefix): the tests clean up what they allocate and may run again on the
//! same cluster, but they are meant for a test cluster, not one in use.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ipam_core::testkit;
use ipam_core::{Error, Ipam, Request, Slot};
use ipam_kube::{KubeOptions, KubeStore};
use serde_json::Value;

/// The ServiceAccount of the plugin, as RBAC names it.
const PLUGIN: &str = "system:serviceaccount:ipam-rs:ipam-cni";
/// The lifecycle controller's identity (deploy/controller.yaml).
const CONTROLLER: &str = "system:serviceaccount:ipam-rs:ipam-controller";
/// A user these tests bind to the `ipam-rs-operator` ClusterRole.
const OPERATOR: &str = "ipam-rs-test-operator";
const OPERATOR_BINDING: &str = "\
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: ipam-rs-test-operator
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: ipam-rs-operator
subjects:
- apiGroup: rbac.authorization.k8s.io
  kind: User
  name: ipam-rs-test-operator
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: ipam-rs-test-operator-spiderpool
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: ipam-rs-operator-spiderpool
subjects:
- apiGroup: rbac.authorization.k8s.io
  kind: User
  name: ipam-rs-test-operator
";

/// A Pod that picks its pool (never scheduled: the test API server runs no scheduler).
const ANNOTATED_POD: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: deploy-test-pod
  namespace: ipam-rs
  annotations:
    ipam.rs/ippool: '{"ipv4": ["deploy-test-plugin"]}'
spec:
  serviceAccountName: ipam-cni
  automountServiceAccountToken: false
  containers:
  - name: c
    image: registry.example.invalid/none:0
"#;

/// The pool the plugin's test allocates from, applied with kubectl.
const PLUGIN_POOL: &str = "\
apiVersion: ipam.rs/v1alpha1
kind: IPPool
metadata:
  name: deploy-test-plugin
spec:
  subnet: 198.18.2.0/24
  ips:
  - 198.18.2.10-198.18.2.19
";

/// A test API server with `deploy/` and the ported seed applied.
struct Cluster {
    kubeconfig: PathBuf,
    kubectl: PathBuf,
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("ipam-kube lies in the workspace")
        .to_owned()
}

/// The installed test cluster, or `None` (after saying so) when there is none.
fn cluster() -> Option<&'static Cluster> {
    static INSTALLED: OnceLock<Cluster> = OnceLock::new();
    let kubeconfig = common::test_kubeconfig()?;
    Some(INSTALLED.get_or_init(|| install(kubeconfig)))
}

/// kubectl: `IPAM_TEST_KUBECTL`, else the first `kubectl` on `PATH`.
fn find_kubectl() -> PathBuf {
    if let Some(path) = std::env::var_os("IPAM_TEST_KUBECTL") {
        return PathBuf::from(path);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("kubectl"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "no kubectl on PATH: install Debian's kubernetes-client \
                 (apt-get install -y kubernetes-client), or set IPAM_TEST_KUBECTL"
            )
        })
}

/// Every manifest under `deploy/` (what `kubectl apply -f` would read), relative to it.
fn manifests_of_deploy() -> BTreeSet<String> {
    fn walk(dir: &Path, base: &Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).expect("read deploy/") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                walk(&path, base, out);
            } else if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml" | "json")
            ) {
                let rel = path.strip_prefix(base).expect("under deploy/");
                out.insert(rel.to_string_lossy().into_owned());
            }
        }
    }
    let base = workspace().join("deploy");
    let mut out = BTreeSet::new();
    walk(&base, &base, &mut out);
    out
}

/// The seed's manifests with `apiVersion` and `kind` changed, and nothing else: one
/// multi-document YAML text.
fn ported_seed() -> String {
    let dir = workspace().join("examples/seed");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("read examples/seed")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no manifests in {}", dir.display());
    let mut docs = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read a seed manifest");
        let (mut api, mut kind) = (0, 0);
        let ported: Vec<String> = text
            .lines()
            .map(|line| match line {
                "apiVersion: spiderpool.spidernet.io/v2beta1" => {
                    api += 1;
                    "apiVersion: ipam.rs/v1alpha1".to_owned()
                }
                "kind: SpiderIPPool" => {
                    kind += 1;
                    "kind: IPPool".to_owned()
                }
                "kind: SpiderReservedIP" => {
                    kind += 1;
                    "kind: ReservedIP".to_owned()
                }
                other => other.to_owned(),
            })
            .collect();
        assert_eq!(
            (api, kind),
            (1, 1),
            "{}: expected one Spiderpool apiVersion and kind line",
            file.display()
        );
        docs.push(ported.join("\n") + "\n");
    }
    docs.join("---\n")
}

fn install(kubeconfig: PathBuf) -> Cluster {
    let c = Cluster {
        kubeconfig,
        kubectl: find_kubectl(),
    };
    let version = c.ok(&["version", "--client"], None);
    let version = version.lines().next().unwrap_or_default();
    eprintln!("kubectl: {} ({version})", c.kubectl.display());
    // Every manifest of deploy/ is installed here, in the documented order.
    let manifests = manifests_of_deploy();
    assert_eq!(
        manifests.iter().map(String::as_str).collect::<Vec<_>>(),
        [
            "controller.yaml",
            "crds/ipam.rs.yaml",
            "daemonset.yaml",
            "rbac.yaml",
            "spiderpool-compat/crds.yaml",
            "spiderpool-compat/rbac.yaml"
        ],
        "the manifests of deploy/ changed: install each here and in docs/kubernetes.md"
    );
    // Both APIs, side by side: their allocation kinds are the same objects, and the RBAC of
    // Spiderpool's API adds roles of other names.
    c.ok(&["apply", "-f", "deploy/crds/"], None);
    c.ok(&["apply", "-f", "deploy/spiderpool-compat/crds.yaml"], None);
    let mut wait = vec!["wait", "--for=condition=Established", "--timeout=60s"];
    let crds: Vec<String> = ipam_api::Api::ALL
        .iter()
        .flat_map(|api| api.crds())
        .map(|crd| format!("crd/{}", crd.metadata.name.clone().unwrap_or_default()))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    wait.extend(crds.iter().map(String::as_str));
    c.ok(&wait, None);
    c.ok(
        &[
            "apply",
            "-f",
            "deploy/rbac.yaml",
            "-f",
            "deploy/spiderpool-compat/rbac.yaml",
            "-f",
            "deploy/daemonset.yaml",
            "-f",
            "deploy/controller.yaml",
        ],
        None,
    );
    c.ok(&["apply", "-f", "-"], Some(OPERATOR_BINDING));
    // The admission webhook's failurePolicy is Fail, and this server runs no Pod: no replica
    // serves it, so pool writes are refused, naming it ...
    let refused = c.run(&["apply", "-f", "-"], Some(&ported_seed()));
    let said = String::from_utf8_lossy(&refused.stderr).into_owned();
    assert!(
        !refused.status.success() && said.contains(r#"failed calling webhook "pools.ipam.rs""#),
        "a pool written while no replica serves the webhook: {said}"
    );
    // ... until the operator removes its configuration (the documented escape hatch).
    c.ok(
        &[
            "delete",
            "validatingwebhookconfiguration",
            "ipam-controller",
        ],
        None,
    );
    c.ok(&["apply", "-f", "-"], Some(&ported_seed()));
    c
}

impl Cluster {
    /// Runs kubectl at the workspace root (manifest paths as the docs write them).
    fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = Command::new(&self.kubectl);
        cmd.current_dir(workspace())
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--request-timeout=60s")
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("run {}: {e}", self.kubectl.display()));
        if let Some(text) = stdin {
            child
                .stdin
                .take()
                .expect("piped")
                .write_all(text.as_bytes())
                .expect("write kubectl's stdin");
        }
        child.wait_with_output().expect("wait for kubectl")
    }

    /// Runs kubectl and returns its stdout; fails the test with its stderr if it fails.
    fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(args, stdin);
        assert!(
            out.status.success(),
            "kubectl {} failed ({}):\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("kubectl prints UTF-8")
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&args, None)).expect("kubectl -o json prints JSON")
    }

    /// `kubectl auth can-i VERB RESOURCE --as=USER [-n NS]`: yes or no. A resource
    /// `R/S` names the subresource `S` of `R`.
    fn can_i(&self, user: &str, verb: &str, resource: &str, namespace: Option<&str>) -> bool {
        let who = format!("--as={user}");
        // `RESOURCE=NAME` asks about one object (rules with resourceNames).
        let (resource, named) = match resource.split_once('=') {
            Some((r, n)) => (r, Some(n)),
            None => (resource, None),
        };
        let (resource, sub) = match resource.split_once('/') {
            Some((r, s)) => (r, Some(format!("--subresource={s}"))),
            None => (resource, None),
        };
        let object = named.map(|n| format!("{resource}/{n}"));
        let resource = object.as_deref().unwrap_or(resource);
        let mut args = vec!["auth", "can-i", verb, resource, who.as_str()];
        args.extend(sub.as_deref());
        if let Some(ns) = namespace {
            args.extend(["-n", ns]);
        }
        let out = self.run(&args, None);
        match String::from_utf8_lossy(&out.stdout).trim() {
            "yes" => true,
            "no" => false,
            other => panic!(
                "kubectl {}: {other:?}\n{}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    }

    /// The admin kubeconfig as YAML.
    fn kubeconfig_yaml(&self) -> serde_yaml_ng::Value {
        let text = std::fs::read_to_string(&self.kubeconfig).expect("read the kubeconfig");
        serde_yaml_ng::from_str(&text).expect("a kubeconfig is YAML")
    }

    /// The current context's cluster entry of the admin kubeconfig.
    fn cluster_entry(&self) -> serde_yaml_ng::Value {
        let kc = self.kubeconfig_yaml();
        let context = kc["current-context"].as_str().expect("a current-context");
        let cluster = kc["contexts"]
            .as_sequence()
            .into_iter()
            .flatten()
            .find(|c| c["name"].as_str() == Some(context))
            .and_then(|c| c["context"]["cluster"].as_str())
            .expect("the current context names a cluster");
        kc["clusters"]
            .as_sequence()
            .into_iter()
            .flatten()
            .find(|c| c["name"].as_str() == Some(cluster))
            .map(|c| c["cluster"].clone())
            .expect("the current context's cluster")
    }

    /// A copy of the admin kubeconfig whose requests impersonate `user`, in `dir`.
    fn kubeconfig_as(&self, user: &str, dir: &Path) -> PathBuf {
        let mut kc = self.kubeconfig_yaml();
        for u in kc["users"].as_sequence_mut().expect("users").iter_mut() {
            u["user"]["as"] = serde_yaml_ng::Value::from(user);
        }
        let path = dir.join(format!("kubeconfig-as-{}", user.replace(':', "-")));
        std::fs::write(&path, serde_yaml_ng::to_string(&kc).expect("YAML")).expect("write");
        path
    }

    /// The engine on the store as installed (namespace `ipam-rs`, no prefix), through
    /// `kubeconfig`.
    fn ipam(&self, kubeconfig: &Path, node: &str) -> Ipam<KubeStore> {
        Ipam::with_config(
            KubeStore::connect(&KubeOptions {
                kubeconfig: Some(kubeconfig.to_owned()),
                ..KubeOptions::default()
            })
            .expect("connect to the test API server"),
            ipam_core::Config {
                node: Some(ipam_core::ObjectName::new(node).expect("a node name")),
                ..ipam_core::Config::default()
            },
        )
    }
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    pollster::block_on(f)
}

/// The resource argument kubectl takes for a manifest's `apiVersion` and `kind`.
fn resource_of(api_version: &str, kind: &str) -> String {
    match api_version.split_once('/') {
        Some((group, _)) => format!("{}.{group}", kind.to_lowercase()),
        None => kind.to_lowercase(),
    }
}

#[test]
fn every_manifest_of_deploy_applies_and_its_objects_exist() {
    let Some(c) = cluster() else { return };
    let mut seen = 0;
    for manifest in manifests_of_deploy() {
        let text = std::fs::read_to_string(workspace().join("deploy").join(&manifest))
            .expect("read a manifest");
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let doc: Value = serde::Deserialize::deserialize(doc).expect("YAML");
            if doc.is_null() {
                continue; // a comment-only document
            }
            let kind = doc["kind"].as_str().expect("kind");
            let name = doc["metadata"]["name"].as_str().expect("metadata.name");
            let resource = resource_of(doc["apiVersion"].as_str().expect("apiVersion"), kind);
            seen += 1;
            if kind == "ValidatingWebhookConfiguration" {
                // Removed by install(): no replica serves it on this server.
                continue;
            }
            let mut args = vec!["get", resource.as_str(), name];
            if let Some(ns) = doc["metadata"]["namespace"].as_str() {
                args.extend(["-n", ns]);
            }
            let got = c.json(&args);
            assert_eq!(got["metadata"]["name"], name, "{manifest}: {kind}/{name}");
        }
    }
    // 6 CRDs; Namespace, ServiceAccount, 2 ClusterRoles, ClusterRoleBinding, Role,
    // RoleBinding; the DaemonSet; the controller's ServiceAccount, ClusterRole,
    // ClusterRoleBinding, Role, RoleBinding, Deployment, the webhook's Service and
    // ValidatingWebhookConfiguration (removed by install: counted while it was there);
    // Spiderpool's API: 6 CRDs (4 of them the same allocation kinds), 3 ClusterRoles and
    // 2 ClusterRoleBindings.
    assert_eq!(seen, 6 + 7 + 1 + 8 + 6 + 5);

    // The controller: two replicas as the ServiceAccount its roles bind, off the Pod network,
    // running the binary the Dockerfile puts in the image.
    let deployment = c.json(&["get", "deployment.apps", "ipam-controller", "-n", "ipam-rs"]);
    assert_eq!(deployment["spec"]["replicas"], 2);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "ipam-controller");
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(
        pod["containers"][0]["command"],
        serde_json::json!(["/usr/local/bin/ipam-controller"])
    );
    let dockerfile = std::fs::read_to_string(workspace().join("deploy/Dockerfile")).unwrap();
    assert!(
        dockerfile.contains("/out/ipam-controller /usr/local/bin/"),
        "{dockerfile}"
    );
    // The node agent is in the image too.
    assert!(dockerfile.contains(" /out/ipam-agent "), "{dockerfile}");

    // The DaemonSet runs as the ServiceAccount that RBAC binds, installs where its volumes
    // reach the host, and runs the script the Dockerfile puts in its image.
    let ds = c.json(&["get", "daemonset.apps", "ipam-cni", "-n", "ipam-rs"]);
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "ipam-cni");
    assert_eq!(pod["hostNetwork"], true);
    let container = &pod["containers"][0];
    let env = |name: &str| -> String {
        container["env"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["name"] == name)
            .and_then(|e| e["value"].as_str())
            .unwrap_or_else(|| panic!("env {name}"))
            .to_owned()
    };
    let host_path_at = |container: &Value, mount: &str| -> String {
        let volume = container["volumeMounts"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["mountPath"] == mount)
            .and_then(|m| m["name"].as_str())
            .unwrap_or_else(|| panic!("nothing mounted at {mount} in {}", container["name"]));
        pod["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| v["name"] == volume)
            .and_then(|v| v["hostPath"]["path"].as_str())
            .unwrap_or_else(|| panic!("volume {volume} is no hostPath"))
            .to_owned()
    };
    assert_eq!(host_path_at(container, &env("CNI_BIN_DIR")), "/opt/cni/bin");
    assert_eq!(
        host_path_at(container, &env("CNI_NET_DIR")),
        "/etc/cni/net.d"
    );
    let command = container["command"][0].as_str().expect("a command");
    let dockerfile = std::fs::read_to_string(workspace().join("deploy/Dockerfile")).unwrap();
    assert!(
        dockerfile.contains(&format!("COPY deploy/install-cni.sh {command}\n")),
        "deploy/Dockerfile does not install {command}"
    );

    // Its second container, the node agent: the binary of the image, serving on the socket
    // the plugin asks by default (the host's, through a hostPath), for the Pod's own node,
    // writing the plugin's log directory of the host.
    let agent = &pod["containers"][1];
    assert_eq!(agent["name"], "agent");
    assert_eq!(
        agent["command"],
        serde_json::json!(["/usr/local/bin/ipam-agent"])
    );
    let args: Vec<&str> = agent["args"]
        .as_array()
        .expect("the agent's args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for arg in [
        "--store=kubernetes",
        "--node=$(NODE_NAME)",
        "--socket=/run/ipam-rs/agent.sock",
    ] {
        assert!(args.contains(&arg), "{arg} not in {args:?}");
    }
    let node_name = agent["env"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["name"] == "NODE_NAME")
        .expect("env NODE_NAME");
    assert_eq!(
        node_name["valueFrom"]["fieldRef"]["fieldPath"],
        "spec.nodeName"
    );
    assert_eq!(host_path_at(agent, "/run/ipam-rs"), "/run/ipam-rs");
    assert_eq!(
        host_path_at(agent, "/var/log/ipam-cni"),
        "/var/log/ipam-cni"
    );
    assert_eq!(agent["livenessProbe"]["httpGet"]["path"], "/healthz");

    let sa = c.json(&["get", "serviceaccount", "ipam-cni", "-n", "ipam-rs"]);
    assert_eq!(sa["metadata"]["name"], "ipam-cni");
}

#[test]
fn the_seed_ports_by_changing_only_apiversion_and_kind() {
    let Some(c) = cluster() else { return };
    // Created as written: the CRD's schema keeps every field of the seed.
    for (file, resource, name) in [
        ("ippool.yaml", "ippool", "test-ippool"),
        ("reservedip.yaml", "reservedip", "test-reservedip"),
    ] {
        let text = std::fs::read_to_string(workspace().join("examples/seed").join(file)).unwrap();
        let seed: Value = serde_yaml_ng::from_str(&text).expect("the seed is YAML");
        let got = c.json(&["get", resource, name]);
        assert_eq!(got["apiVersion"], "ipam.rs/v1alpha1");
        assert_eq!(got["spec"], seed["spec"], "{resource}/{name}");
    }
    // kubectl prints the CRDs' columns (no AGE: a CRD that lists columns gets only those).
    let table = c.ok(&["get", "ippools"], None);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "VERSION",
            "SUBNET",
            "TOTAL",
            "RESERVED",
            "ALLOCATED",
            "AVAILABLE"
        ]
    );
    let row = table
        .lines()
        .find(|l| l.starts_with("test-ippool "))
        .unwrap_or_else(|| panic!("no test-ippool in\n{table}"));
    assert!(row.contains(" 10.6.0.0/16 "), "{row}");
    let table = c.ok(&["get", "reservedips"], None);
    assert!(table.starts_with("NAME"), "{table}");
    assert!(table.contains("\ntest-reservedip "), "{table}");

    // The store reads what kubectl wrote, by the objects' names.
    let ipam = c.ipam(&c.kubeconfig, "node-deploy-test");
    let pool = block_on(ipam.pool(&testkit::name("test-ippool")))
        .expect("read the pool")
        .expect("the store sees test-ippool");
    assert_eq!(pool.spec().subnet, "10.6.0.0/16");
    assert_eq!(pool.spec().ips, ["10.6.168.131-10.6.168.133"]);
    let reserved = block_on(ipam.reserved_ips()).expect("list the ReservedIPs");
    let r = reserved
        .iter()
        .find(|r| r.name().as_str() == "test-reservedip")
        .expect("the store sees test-reservedip");
    assert_eq!(r.spec().ips, ["10.6.168.131-10.6.168.132"]);

    // The seed's objects are the cluster's: leave none behind that would overlap the pools
    // of other tests or of the walk-through on the same cluster.
    c.ok(&["delete", "-f", "-"], Some(&ported_seed()));
}

/// What the plugin's requests need: `(verb, resource, namespace)`.
const PLUGIN_MAY: &[(&str, &str, Option<&str>)] = &[
    ("get", "ippools.ipam.rs", None),
    ("list", "ippools.ipam.rs", None),
    ("get", "reservedips.ipam.rs", None),
    ("list", "reservedips.ipam.rs", None),
    ("get", "pods", Some("default")),
    ("get", "statefulsets.apps", Some("default")),
    ("get", "ipamblocks.ipam.rs", Some("ipam-rs")),
    ("list", "ipamblocks.ipam.rs", Some("ipam-rs")),
    ("create", "ipamblocks.ipam.rs", Some("ipam-rs")),
    ("update", "ipamblocks.ipam.rs", Some("ipam-rs")),
    ("delete", "ipamblocks.ipam.rs", Some("ipam-rs")),
    ("get", "ipamowners.ipam.rs", Some("ipam-rs")),
    ("list", "ipamowners.ipam.rs", Some("ipam-rs")),
    ("create", "ipamowners.ipam.rs", Some("ipam-rs")),
    ("update", "ipamowners.ipam.rs", Some("ipam-rs")),
    ("delete", "ipamowners.ipam.rs", Some("ipam-rs")),
    ("get", "ipamcursors.ipam.rs", Some("ipam-rs")),
    ("create", "ipamcursors.ipam.rs", Some("ipam-rs")),
    ("patch", "ipamcursors.ipam.rs", Some("ipam-rs")),
    // Spiderpool's API (deploy/spiderpool-compat/rbac.yaml).
    ("get", "spiderippools.spiderpool.spidernet.io", None),
    ("list", "spiderippools.spiderpool.spidernet.io", None),
    ("get", "spiderreservedips.spiderpool.spidernet.io", None),
    ("list", "spiderreservedips.spiderpool.spidernet.io", None),
];

/// What a node's credentials must not allow.
const PLUGIN_MAY_NOT: &[(&str, &str, Option<&str>)] = &[
    ("create", "ippools.ipam.rs", None),
    ("update", "ippools.ipam.rs", None),
    ("delete", "ippools.ipam.rs", None),
    ("update", "ippools.ipam.rs/status", None),
    ("create", "reservedips.ipam.rs", None),
    ("delete", "reservedips.ipam.rs", None),
    ("create", "spiderippools.spiderpool.spidernet.io", None),
    ("update", "spiderippools.spiderpool.spidernet.io", None),
    (
        "patch",
        "spiderippools.spiderpool.spidernet.io/status",
        None,
    ),
    ("create", "spiderreservedips.spiderpool.spidernet.io", None),
    ("delete", "spiderreservedips.spiderpool.spidernet.io", None),
    ("update", "ipamcursors.ipam.rs", Some("ipam-rs")),
    ("delete", "ipamcursors.ipam.rs", Some("ipam-rs")),
    ("watch", "ipamblocks.ipam.rs", Some("ipam-rs")),
    ("patch", "ipamblocks.ipam.rs", Some("ipam-rs")),
    ("deletecollection", "ipamowners.ipam.rs", Some("ipam-rs")),
    // The allocation kinds only in the store's namespace.
    ("get", "ipamblocks.ipam.rs", Some("default")),
    ("list", "pods", Some("default")),
    ("list", "statefulsets.apps", Some("default")),
    ("update", "statefulsets.apps", Some("default")),
    ("get", "secrets", Some("ipam-rs")),
    ("create", "namespaces", None),
    (
        "create",
        "customresourcedefinitions.apiextensions.k8s.io",
        None,
    ),
];

/// What ipamctl's requests need.
const OPERATOR_MAY: &[(&str, &str, Option<&str>)] = &[
    ("get", "ippools.ipam.rs", None),
    ("list", "ippools.ipam.rs", None),
    ("create", "ippools.ipam.rs", None),
    ("update", "ippools.ipam.rs", None),
    ("delete", "ippools.ipam.rs", None),
    ("get", "reservedips.ipam.rs", None),
    ("list", "reservedips.ipam.rs", None),
    ("create", "reservedips.ipam.rs", None),
    ("update", "reservedips.ipam.rs", None),
    ("delete", "reservedips.ipam.rs", None),
    ("get", "ipamblocks.ipam.rs", Some("ipam-rs")),
    ("list", "ipamblocks.ipam.rs", Some("ipam-rs")),
    ("update", "ipamblocks.ipam.rs", Some("ipam-rs")),
    ("delete", "ipamblocks.ipam.rs", Some("ipam-rs")),
    ("get", "ipamowners.ipam.rs", Some("ipam-rs")),
    ("list", "ipamowners.ipam.rs", Some("ipam-rs")),
    ("update", "ipamowners.ipam.rs", Some("ipam-rs")),
    ("delete", "ipamowners.ipam.rs", Some("ipam-rs")),
    ("get", "ipamcursors.ipam.rs", Some("ipam-rs")),
    ("patch", "ipamcursors.ipam.rs", Some("ipam-rs")),
    ("delete", "ipamcursors.ipam.rs", Some("ipam-rs")),
    ("get", "ipamguards.ipam.rs", Some("ipam-rs")),
    ("create", "ipamguards.ipam.rs", Some("ipam-rs")),
    ("update", "ipamguards.ipam.rs", Some("ipam-rs")),
    ("patch", "ippools.ipam.rs/status", None),
    ("get", "spiderippools.spiderpool.spidernet.io", None),
    ("list", "spiderippools.spiderpool.spidernet.io", None),
    ("create", "spiderippools.spiderpool.spidernet.io", None),
    ("update", "spiderippools.spiderpool.spidernet.io", None),
    ("delete", "spiderippools.spiderpool.spidernet.io", None),
    ("get", "spiderreservedips.spiderpool.spidernet.io", None),
    ("list", "spiderreservedips.spiderpool.spidernet.io", None),
    ("create", "spiderreservedips.spiderpool.spidernet.io", None),
    ("update", "spiderreservedips.spiderpool.spidernet.io", None),
    ("delete", "spiderreservedips.spiderpool.spidernet.io", None),
    (
        "patch",
        "spiderippools.spiderpool.spidernet.io/status",
        None,
    ),
    ("list", "pods", None),
    ("list", "nodes", None),
    ("list", "statefulsets.apps", None),
];

/// What the controller's requests need: its syncs' lists, the fresh look before a release, the
/// release, the pools' status, its Lease; with Spiderpool's API the same on its kinds.
const CONTROLLER_MAY: &[(&str, &str, Option<&str>)] = &[
    ("get", "ippools.ipam.rs", None),
    ("list", "ippools.ipam.rs", None),
    ("list", "reservedips.ipam.rs", None),
    ("patch", "ippools.ipam.rs/status", None),
    ("list", "spiderippools.spiderpool.spidernet.io", None),
    ("list", "spiderreservedips.spiderpool.spidernet.io", None),
    (
        "patch",
        "spiderippools.spiderpool.spidernet.io/status",
        None,
    ),
    ("list", "pods", None),
    ("get", "pods", Some("default")),
    ("list", "nodes", None),
    ("get", "nodes", None),
    ("list", "statefulsets.apps", None),
    ("get", "statefulsets.apps", Some("default")),
    ("watch", "pods", None),
    ("watch", "nodes", None),
    ("watch", "statefulsets.apps", None),
    ("list", "ipamblocks.ipam.rs", Some("ipam-rs")),
    ("update", "ipamblocks.ipam.rs", Some("ipam-rs")),
    ("delete", "ipamblocks.ipam.rs", Some("ipam-rs")),
    ("get", "ipamowners.ipam.rs", Some("ipam-rs")),
    ("update", "ipamowners.ipam.rs", Some("ipam-rs")),
    ("delete", "ipamowners.ipam.rs", Some("ipam-rs")),
    ("patch", "ipamcursors.ipam.rs", Some("ipam-rs")),
    ("get", "leases.coordination.k8s.io", Some("ipam-rs")),
    ("create", "leases.coordination.k8s.io", Some("ipam-rs")),
    ("update", "leases.coordination.k8s.io", Some("ipam-rs")),
    // The webhook: the pools' guard its check reads, its certificate and the caBundle of its
    // own configuration.
    ("get", "ipamguards.ipam.rs", Some("ipam-rs")),
    ("create", "secrets", Some("ipam-rs")),
    ("get", "secrets=ipam-controller-webhook", Some("ipam-rs")),
    ("update", "secrets=ipam-controller-webhook", Some("ipam-rs")),
    (
        "get",
        "validatingwebhookconfigurations.admissionregistration.k8s.io=ipam-controller",
        None,
    ),
    (
        "patch",
        "validatingwebhookconfigurations.admissionregistration.k8s.io=ipam-controller",
        None,
    ),
];

/// What the controller must not do: it releases, it never allocates or edits pools.
const CONTROLLER_MAY_NOT: &[(&str, &str, Option<&str>)] = &[
    ("create", "ippools.ipam.rs", None),
    ("update", "ippools.ipam.rs", None),
    ("delete", "reservedips.ipam.rs", None),
    ("create", "ipamblocks.ipam.rs", Some("ipam-rs")),
    ("delete", "pods", Some("default")),
    ("update", "nodes", None),
    ("get", "secrets", Some("ipam-rs")),
    ("get", "secrets=other", Some("ipam-rs")),
    ("list", "secrets", Some("ipam-rs")),
    ("create", "secrets", Some("default")),
    (
        "patch",
        "validatingwebhookconfigurations.admissionregistration.k8s.io=other",
        None,
    ),
    (
        "create",
        "validatingwebhookconfigurations.admissionregistration.k8s.io",
        None,
    ),
    ("update", "leases.coordination.k8s.io", Some("kube-system")),
];

#[test]
fn rbac_grants_what_the_store_sends_and_no_more() {
    let Some(c) = cluster() else { return };
    let mut wrong = Vec::new();
    let mut check = |user: &str, rules: &[(&str, &str, Option<&str>)], want: bool| {
        for &(verb, resource, ns) in rules {
            if c.can_i(user, verb, resource, ns) != want {
                wrong.push(format!(
                    "{user} {} {verb} {resource}{}",
                    if want { "may not" } else { "may" },
                    ns.map(|n| format!(" in {n}")).unwrap_or_default()
                ));
            }
        }
    };
    check(PLUGIN, PLUGIN_MAY, true);
    check(PLUGIN, PLUGIN_MAY_NOT, false);
    check(OPERATOR, OPERATOR_MAY, true);
    check(CONTROLLER, CONTROLLER_MAY, true);
    check(CONTROLLER, CONTROLLER_MAY_NOT, false);
    check(
        OPERATOR,
        &[
            ("get", "secrets", Some("ipam-rs")),
            ("delete", "pods", Some("default")),
            ("update", "nodes", None),
        ],
        false,
    );
    assert!(wrong.is_empty(), "deploy/rbac.yaml:\n{}", wrong.join("\n"));
}

/// Runs `deploy/install-cni.sh` as the DaemonSet does, on a fake node in a scratch directory.
struct Installer {
    child: std::process::Child,
    dir: tempfile::TempDir,
}

impl Installer {
    fn sa_dir(&self) -> PathBuf {
        self.dir.path().join("serviceaccount")
    }
    fn kubeconfig(&self) -> PathBuf {
        self.dir
            .path()
            .join("host/etc/cni/net.d/ipam-cni.kubeconfig")
    }
    fn binary(&self) -> PathBuf {
        self.dir.path().join("host/opt/cni/bin/ipam-cni")
    }

    /// Waits until the kubeconfig on the "host" holds `token`.
    fn wait_for_token(&mut self, token: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(text) = std::fs::read_to_string(self.kubeconfig()) {
                if text.contains(token) {
                    return;
                }
            }
            if let Some(status) = self.child.try_wait().expect("poll install-cni.sh") {
                panic!("install-cni.sh exited ({status}) before writing the kubeconfig");
            }
            assert!(
                Instant::now() < deadline,
                "install-cni.sh wrote no kubeconfig with the token in 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Installer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A token of the plugin's ServiceAccount, as the kubelet projects one into the Pod, valid
/// for `seconds` (tokens asked for within one second with one lifetime are the same).
fn plugin_token(c: &Cluster, seconds: i64) -> String {
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
    use k8s_openapi::api::core::v1::ServiceAccount;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let kc = kube::config::Kubeconfig::read_from(&c.kubeconfig).expect("read the kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .expect("use the kubeconfig");
        let client = kube::Client::try_from(config).expect("a client");
        let api: kube::Api<ServiceAccount> = kube::Api::namespaced(client, "ipam-rs");
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: vec![],
                expiration_seconds: Some(seconds),
                ..Default::default()
            },
            ..Default::default()
        };
        api.create_token_request("ipam-cni", &Default::default(), &request)
            .await
            .expect("a token for ipam-rs/ipam-cni")
            .status
            .expect("the token")
            .token
    })
}

/// The PEM the kubelet would put in `ca.crt`: the kubeconfig's CA, or (the testenv's
/// self-signed server) `certs/apiserver.crt` next to the kubeconfig.
fn cluster_ca(c: &Cluster) -> Vec<u8> {
    use base64::Engine;
    let entry = c.cluster_entry();
    if let Some(data) = entry["certificate-authority-data"].as_str() {
        return base64::engine::general_purpose::STANDARD
            .decode(data)
            .expect("certificate-authority-data is base64");
    }
    let dir = c.kubeconfig.parent().expect("the kubeconfig's directory");
    let file = match entry["certificate-authority"].as_str() {
        Some(path) => dir.join(path),
        None => dir.join("certs/apiserver.crt"),
    };
    std::fs::read(&file).unwrap_or_else(|e| {
        panic!(
            "no CA for the test API server: the kubeconfig has none and {} is unreadable ({e})",
            file.display()
        )
    })
}

/// Starts `deploy/install-cni.sh` as the DaemonSet's container, with the Pod's environment
/// (`KUBERNETES_SERVICE_HOST/PORT` from the admin kubeconfig's server).
fn start_installer(c: &Cluster, token: &str) -> Installer {
    let dir = tempfile::tempdir().expect("a scratch directory");
    let sa = dir.path().join("serviceaccount");
    std::fs::create_dir_all(&sa).unwrap();
    std::fs::write(sa.join("token"), token).unwrap();
    std::fs::write(sa.join("ca.crt"), cluster_ca(c)).unwrap();
    std::fs::write(sa.join("namespace"), "ipam-rs").unwrap();
    let image_binary = dir.path().join("image-ipam-cni");
    std::fs::write(&image_binary, "#!/bin/sh\necho ipam-cni\n").unwrap();
    let server = c.cluster_entry()["server"]
        .as_str()
        .expect("a server")
        .to_owned();
    let host_port = server
        .strip_prefix("https://")
        .expect("an https server")
        .trim_end_matches('/');
    let (host, port) = host_port.rsplit_once(':').unwrap_or((host_port, "443"));
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let child = Command::new("sh")
        .arg(workspace().join("deploy/install-cni.sh"))
        .env("IPAM_CNI_BINARY", &image_binary)
        .env("CNI_BIN_DIR", dir.path().join("host/opt/cni/bin"))
        .env("CNI_NET_DIR", dir.path().join("host/etc/cni/net.d"))
        .env("SERVICEACCOUNT_DIR", &sa)
        .env("KUBERNETES_SERVICE_HOST", host)
        .env("KUBERNETES_SERVICE_PORT", port)
        .env_remove("KUBERNETES_API_SERVER")
        .env("REFRESH_SECONDS", "1")
        .stdin(Stdio::null())
        .spawn()
        .expect("run deploy/install-cni.sh with sh");
    Installer { child, dir }
}

#[test]
fn the_plugin_works_with_the_kubeconfig_the_daemonset_writes() {
    use std::os::unix::fs::PermissionsExt;
    let Some(c) = cluster() else { return };
    let token = plugin_token(c, 3600);
    let mut installer = start_installer(c, &token);
    installer.wait_for_token(&token);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&installer.binary()), 0o755);
    assert_eq!(
        std::fs::read_to_string(installer.binary()).unwrap(),
        "#!/bin/sh\necho ipam-cni\n"
    );
    assert_eq!(mode(&installer.kubeconfig()), 0o600, "it holds a token");

    // What the plugin does, as the ServiceAccount, through that kubeconfig: ADD, a repeated
    // ADD, CHECK's read, the pool's counts (STATUS, code 100's message), DEL, GC; from a
    // pool of its own, applied with kubectl, which nothing else allocates from.
    c.ok(&["apply", "-f", "-"], Some(PLUGIN_POOL));
    let ipam = c.ipam(&installer.kubeconfig(), "node-deploy-test");
    let network = "deploy-test-plugin";
    block_on(ipam.gc(network, &BTreeSet::new())).expect("GC what an earlier run left");
    let request = Request::new(
        testkit::owner(&format!("deploy-{}", std::process::id())),
        network,
    )
    .slot(Slot::any_of([testkit::name("deploy-test-plugin")]));
    let got = block_on(ipam.allocate(&request)).expect("ADD as the plugin's ServiceAccount");
    let address = got[0].allocation.address;
    let pool = block_on(ipam.pool(&testkit::name("deploy-test-plugin")))
        .expect("read the pool")
        .expect("the store sees the pool kubectl applied");
    assert!(
        pool.ips().contains(ipam_core::backend::to_u128(address)),
        "{address} is not of the pool"
    );
    let again = block_on(ipam.allocate(&request)).expect("a repeated ADD");
    assert_eq!(again[0].allocation.address, address);
    let held = block_on(ipam.owner_allocations(request.owner())).expect("CHECK's read");
    assert_eq!(held.len(), 1);
    let counts = block_on(ipam.pool_counts(&pool)).expect("the pool's counts");
    assert_eq!((counts.total, counts.allocated), (10, 1));
    let released = block_on(ipam.release(request.owner(), Some(network))).expect("DEL");
    assert_eq!(released.len(), 1);
    assert!(block_on(ipam.owner_allocations(request.owner()))
        .unwrap()
        .is_empty());
    let gc = block_on(ipam.gc(network, &BTreeSet::new())).expect("GC");
    assert!(gc.failures.is_empty(), "{:?}", gc.failures);

    // ADD reads the Pod (its UID, and the pools its annotation picks).
    c.ok(&["apply", "-f", "-"], Some(ANNOTATED_POD));
    let pod = block_on(ipam.store().pod("ipam-rs", "deploy-test-pod"))
        .expect("get a Pod as the plugin's ServiceAccount")
        .expect("the Pod exists");
    assert_eq!(
        pod.annotations.get("ipam.rs/ippool").map(String::as_str),
        Some(r#"{"ipv4": ["deploy-test-plugin"]}"#)
    );
    assert!(pod.uid.is_some());
    assert!(block_on(ipam.store().pod("default", "no-such-pod"))
        .expect("a missing Pod is no error")
        .is_none());

    // A node's credentials cannot change the pools.
    let err = block_on(ipam.apply_pool(testkit::pool(
        "deploy-test-forbidden",
        "198.18.1.0/24",
        &["198.18.1.10"],
    )))
    .expect_err("the plugin's ServiceAccount must not create pools");
    assert!(err.to_string().contains("403"), "{err}");

    // The kubelet rotates the token: the installer writes the new one, and it works.
    let rotated = plugin_token(c, 3601);
    assert_ne!(rotated, token);
    std::fs::write(installer.sa_dir().join("token"), &rotated).unwrap();
    installer.wait_for_token(&rotated);
    let ipam = c.ipam(&installer.kubeconfig(), "node-deploy-test");
    block_on(ipam.owner_allocations(request.owner())).expect("a read with the rotated token");

    // SIGTERM (the kubelet stopping the Pod) ends it at once, successfully.
    let pid = installer.child.id().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = installer.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "install-cni.sh ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status.success(),
        "install-cni.sh exited {status} on SIGTERM"
    );
}

#[test]
fn ipamctl_s_operations_work_under_the_operator_role() {
    let Some(c) = cluster() else { return };
    let scratch = tempfile::tempdir().unwrap();
    let operator = c.ipam(&c.kubeconfig_as(OPERATOR, scratch.path()), "operator");
    let plugin = c.ipam(&c.kubeconfig_as(PLUGIN, scratch.path()), "node-deploy-test");
    let name = testkit::name("deploy-test-operator");
    // What an earlier run may have left.
    match block_on(operator.delete_pool(&name, true)) {
        Ok(_) | Err(Error::NotFound { .. }) => {}
        Err(e) => panic!("clean up: {e}"),
    }
    match block_on(operator.delete_reserved_ip(&name)) {
        Ok(()) | Err(Error::NotFound { .. }) => {}
        Err(e) => panic!("clean up: {e}"),
    }

    // apply, twice; a ReservedIP.
    let pool = testkit::pool(name.as_str(), "198.18.0.0/24", &["198.18.0.10-198.18.0.19"]);
    let applied = block_on(operator.apply_pool(pool.clone())).expect("apply the pool");
    assert_eq!(applied.to_string(), "created");
    let applied = block_on(operator.apply_pool(pool.clone())).expect("apply it again");
    assert_eq!(applied.to_string(), "unchanged");
    let reserved = testkit::reserved(name.as_str(), &["198.18.0.10-198.18.0.11"]);
    block_on(operator.apply_reserved_ip(reserved)).expect("apply the ReservedIP");

    // The plugin allocates from it; get, explain and the counts see that.
    let request = Request::new(
        testkit::owner(&format!("deploy-op-{}", std::process::id())),
        "deploy-test-operator",
    )
    .slot(Slot::any_of([name.clone()]));
    let got = block_on(plugin.allocate(&request)).expect("ADD from the operator's pool");
    let address = got[0].allocation.address;
    let last = match address {
        IpAddr::V4(a) => a.octets()[3],
        IpAddr::V6(_) => panic!("{address}"),
    };
    assert!((12..=19).contains(&last), "{address}: reserved or outside");
    assert!(block_on(operator.pools())
        .unwrap()
        .iter()
        .any(|p| p.name() == &name));
    let counts = block_on(operator.pool_counts(&pool)).expect("get ippools' counts");
    assert_eq!(
        (
            counts.total,
            counts.reserved,
            counts.allocated,
            counts.available
        ),
        (10, 2, 1, 7)
    );
    let held = block_on(operator.allocations(Some(&name))).expect("get allocations");
    assert_eq!(held.len(), 1);
    let why = block_on(operator.explain(address)).expect("explain");
    assert_eq!(why.held.map(|a| a.owner), Some(request.owner().clone()));
    let why = block_on(operator.explain("198.18.0.10".parse().unwrap())).expect("explain");
    assert_eq!(why.reserved_by, std::slice::from_ref(&name));

    // delete: refused while it holds addresses, done with --force.
    match block_on(operator.delete_pool(&name, false)) {
        Err(Error::PoolInUse { .. }) => {}
        other => panic!("delete of a pool in use: {other:?}"),
    }
    let released = block_on(operator.delete_pool(&name, true)).expect("delete --force");
    assert_eq!(released.len(), 1);
    block_on(operator.delete_reserved_ip(&name)).expect("delete the ReservedIP");
    assert!(block_on(operator.pool(&name)).unwrap().is_none());
    assert!(block_on(plugin.owner_allocations(request.owner()))
        .unwrap()
        .is_empty());
}
