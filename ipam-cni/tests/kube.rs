//! The plugin and ipamctl on the Kubernetes store, against a real kube-apiserver
//! (`testenv/`; `IPAM_TEST_KUBECONFIG` names its admin kubeconfig). Without one the tests say
//! so and pass, except under `CI=true`, where a missing cluster is a failure.
//!
//! Cluster-scoped pools are shared by every test of the cluster: each test names its own.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::ipamctl_on_cluster as ipamctl;
use common::test_cluster as cluster;
use common::{call, run_with_stdin, unique, Reply};
use serde_json::{json, Value};

fn kubectl(kubeconfig: &Path, args: &[&str], stdin: &str) -> String {
    common::kubectl_ok(kubeconfig, args, stdin)
}

/// A network on the Kubernetes store of `namespace`, for `node`, drawing from `ipam`.
fn network(kubeconfig: &Path, namespace: &str, node: &str, mut ipam: Value) -> Value {
    ipam["type"] = json!("ipam-cni");
    ipam["store"] = json!({"kubernetes": {
        "kubeconfig": kubeconfig.to_str().unwrap(),
        "nodeName": node,
        "namespace": namespace,
    }});
    json!({"cniVersion": "1.0.0", "name": "kube-net", "type": "macvlan", "ipam": ipam})
}

/// A namespace for the allocation objects of one test.
fn namespace(kubeconfig: &Path) -> String {
    common::namespace(kubeconfig, "cni")
}

/// The seed's manifests with the objects renamed, so that runs do not meet.
fn seed(pool: &str, reserved: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/seed");
    let text = std::fs::read_to_string(root.join("reservedip.yaml")).unwrap()
        + "---\n"
        + &std::fs::read_to_string(root.join("ippool.yaml")).unwrap();
    text.replace("name: test-ippool", &format!("name: {pool}"))
        .replace("name: test-reservedip", &format!("name: {reserved}"))
}

#[test]
fn the_seed_walkthrough_and_pod_annotations_on_the_cluster() {
    let Some(k) = cluster() else { return };
    let ns = namespace(&k);
    let (pool, reserved) = (unique("seed-pool"), unique("seed-reserved"));
    let (status, out, err) = ipamctl(&k, &ns, &["apply", "-f", "-"], &seed(&pool, &reserved));
    assert_eq!(status, 0, "{err}");
    assert_eq!(
        out,
        format!("reservedip/{reserved} created\nippool/{pool} created\n")
    );
    let conf = network(&k, &ns, "node-a", json!({"ippools": {"ipv4": [pool]}}));
    let a = call("ADD", "pod-a", &conf).run().ok();
    assert_eq!(a.addresses(), ["10.6.168.133/16"]);
    assert_eq!(
        call("ADD", "pod-a", &conf).run().ok().addresses(),
        a.addresses()
    );
    let b = call("ADD", "pod-b", &conf).run();
    assert_eq!(b.code(), Some(100), "{b:#?}");
    call("CHECK", "pod-a", &conf).run().ok();
    let json = ipamctl(&k, &ns, &["get", "ippool", &pool, "-o", "json"], "").1;
    let counts: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(counts["status"]["allocatedIPCount"], 1, "{json}");
    // ipamctl's get refreshed the pool's status, which kubectl prints.
    let row = kubectl(&k, &["get", "ippool", &pool, "--no-headers"], "");
    let columns: Vec<&str> = row.split_whitespace().collect();
    // (VERSION is empty: the seed's pool does not set spec.ipVersion.)
    assert_eq!(columns[1..], ["10.6.0.0/16", "3", "2", "1", "0"], "{row}");

    // A Pod that asks for another pool by Spiderpool's annotation gets it, and its UID is
    // recorded.
    let other = unique("annotated-pool");
    let manifest = format!(
        "apiVersion: ipam.rs/v1alpha1\nkind: IPPool\nmetadata:\n  name: {other}\nspec:\n  subnet: 10.7.0.0/24\n  ips:\n  - 10.7.0.10-10.7.0.20\n"
    );
    assert_eq!(ipamctl(&k, &ns, &["apply", "-f", "-"], &manifest).0, 0);
    let pod = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  namespace: {ns}\n  annotations:\n    ipam.spidernet.io/ippool: '{{\"ipv4\": [\"{other}\"]}}'\nspec:\n  automountServiceAccountToken: false\n  containers:\n  - name: web\n    image: example.invalid/web\n"
    );
    // No controller manager runs: the Pod's service account is made by hand, and no token is
    // mounted.
    kubectl(&k, &["-n", &ns, "create", "serviceaccount", "default"], "");
    kubectl(&k, &["apply", "-f", "-"], &pod);
    let uid = kubectl(
        &k,
        &[
            "-n",
            &ns,
            "get",
            "pod",
            "web",
            "-o",
            "jsonpath={.metadata.uid}",
        ],
        "",
    );
    let args = format!("K8S_POD_NAMESPACE={ns};K8S_POD_NAME=web");
    let web = call("ADD", "web-1", &conf)
        .var("CNI_ARGS", &args)
        .run()
        .ok();
    assert_eq!(web.addresses(), ["10.7.0.10/24"]);
    let allocations: Value =
        serde_json::from_str(&ipamctl(&k, &ns, &["get", "allocations", "-o", "json"], "").1)
            .unwrap();
    let item = allocations["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["containerID"] == "web-1")
        .cloned()
        .expect("web-1 listed");
    assert_eq!(item["podUID"], json!(uid), "{item}");
    assert_eq!(item["pool"], json!(other));

    // The objects are there for kubectl too.
    let blocks = kubectl(&k, &["-n", &ns, "get", "ipamblocks"], "");
    assert!(
        blocks.contains("10.6.168.128/26") && blocks.contains("10.7.0.0/26"),
        "{blocks}"
    );

    // The seed's step 5: deleting the ReservedIP frees its addresses for pod-b.
    assert_eq!(
        ipamctl(&k, &ns, &["delete", "reservedip", &reserved], "").0,
        0
    );
    call("ADD", "pod-b", &conf).run().ok();
    for id in ["pod-a", "pod-b", "web-1"] {
        call("DEL", id, &conf).run().ok();
        call("DEL", id, &conf).run().ok();
    }
    let left = ipamctl(&k, &ns, &["get", "allocations", "-o", "json"], "").1;
    assert_eq!(
        serde_json::from_str::<Value>(&left).unwrap()["items"],
        json!([]),
        "{left}"
    );
    // A ReservedIP applied with kubectl counts at once, and deleted with kubectl, frees.
    let kubectl_reserved = unique("kubectl-reserved");
    let manifest = format!(
        "apiVersion: ipam.rs/v1alpha1\nkind: ReservedIP\nmetadata:\n  name: {kubectl_reserved}\nspec:\n  ips:\n  - 10.7.0.10\n"
    );
    kubectl(&k, &["apply", "-f", "-"], &manifest);
    let web2 = call("ADD", "web-2", &conf)
        .var("CNI_ARGS", &args)
        .run()
        .ok();
    assert_eq!(web2.addresses(), ["10.7.0.11/24"]);
    kubectl(&k, &["delete", "reservedip", &kubectl_reserved], "");
    let web3 = call("ADD", "web-3", &conf)
        .var("CNI_ARGS", &args)
        .run()
        .ok();
    assert_eq!(
        web3.addresses(),
        ["10.7.0.12/24"],
        "round-robin goes on from .11"
    );
    for id in ["web-2", "web-3"] {
        call("DEL", id, &conf).run().ok();
    }
    let reserved_again = call("ADD", "web-4", &conf)
        .var("CNI_ARGS", &format!("{args};IP=10.7.0.10"))
        .run()
        .ok();
    assert_eq!(reserved_again.addresses(), ["10.7.0.10/24"]);
    call("DEL", "web-4", &conf).run().ok();

    // Pools are the cluster's: leave none that would overlap another test's.
    for p in [&pool, &other] {
        assert_eq!(ipamctl(&k, &ns, &["delete", "ippool", p], "").0, 0);
    }
}

#[test]
fn an_unreachable_or_refusing_api_server_is_named_and_never_hangs() {
    let Some(k) = cluster() else { return };
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(&k).unwrap();
    let server = text
        .lines()
        .find_map(|l| l.split("server:").nth(1))
        .map(|s| {
            s.trim()
                .trim_matches(|c| c == '"' || c == ',' || c == '}')
                .trim_matches('"')
                .to_owned()
        })
        .expect("server in the kubeconfig");
    // Nothing listens on port 1. Refused connections are retried (a restarting server comes
    // back) until the call's deadline, the lock wait (here 3 s), then answered 11.
    let down = dir.path().join("down");
    std::fs::write(&down, text.replace(&server, "https://127.0.0.1:1")).unwrap();
    let conf = network(&down, "ipam-rs", "n", json!({"ippools": {"ipv4": ["p"]}}));
    let started = Instant::now();
    let r = call("ADD", "c1", &conf)
        .var("IPAM_CNI_LOCK_WAIT_MS", "3000")
        .run();
    let took = started.elapsed();
    assert_eq!(r.code(), Some(11), "{r:#?}");
    assert!(
        r.msg().contains(
            "https://127.0.0.1:1/: connections refused for 2 s, until the call's deadline: "
        ) && r.msg().contains("Connection refused"),
        "{r:#?}"
    );
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(10),
        "ADD with the API server down answered in {took:?}, not at its 3 s deadline"
    );
    // Credentials the server refuses: an I/O error naming the server.
    let nobody = dir.path().join("nobody");
    let token_line = text
        .lines()
        .find(|l| l.contains("token:"))
        .expect("a token in the kubeconfig");
    std::fs::write(&nobody, text.replace(token_line, "    token: not-a-token")).unwrap();
    let conf = network(&nobody, "ipam-rs", "n", json!({"ippools": {"ipv4": ["p"]}}));
    let r: Reply = call("ADD", "c1", &conf).run();
    assert_eq!(r.code(), Some(5), "{r:#?}");
    assert!(r.stdout.contains("401"), "{r:#?}");
}

/// The test cluster's kubeconfig with `line` (of the cluster or the user) replaced.
fn kubeconfig_with(
    kubeconfig: &Path,
    dir: &Path,
    name: &str,
    prefix: &str,
    line: &str,
) -> std::path::PathBuf {
    let text = std::fs::read_to_string(kubeconfig).unwrap();
    let old = text
        .lines()
        .find(|l| l.trim_start().starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix} in the test cluster's kubeconfig"));
    let indent = &old[..old.len() - old.trim_start().len()];
    let path = dir.join(name);
    let lines = line.replace('\n', &format!("\n{indent}"));
    std::fs::write(&path, text.replace(old, &format!("{indent}{lines}"))).unwrap();
    path
}

/// Runs `openssl` in `dir` with `args` (split at spaces).
fn openssl(dir: &Path, args: &str) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args.split(' '))
        .output()
        .expect("openssl (testenv/start.sh needs it too)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn base64_of(path: &Path) -> String {
    let out = Command::new("base64")
        .arg("-w0")
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

/// A certificate that does not verify is no passing failure: retried, it fails the same way
/// for ever. ADD, DEL and ipamctl each fail at once (code 5, exit 1) and name the
/// certificate and why:
/// - a CA that did not sign the server's certificate;
/// - `certificate-authority-data` that is no certificate;
/// - a client certificate of X.509 version 1, which rustls cannot use (kube called it an
///   "invalid private key").
#[test]
fn a_certificate_that_does_not_verify_is_named_and_not_retried() {
    let Some(k) = cluster() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    openssl(d, "req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=another-ca -keyout other-ca.key -out other-ca.crt");
    let wrong_ca = kubeconfig_with(
        &k,
        d,
        "wrong-ca",
        "certificate-authority-data:",
        &format!(
            "certificate-authority-data: {}",
            base64_of(&d.join("other-ca.crt"))
        ),
    );
    // "not a certificate", in base64.
    let no_ca = kubeconfig_with(
        &k,
        d,
        "no-ca",
        "certificate-authority-data:",
        "certificate-authority-data: bm90IGEgY2VydGlmaWNhdGUK",
    );
    // Without extensions, openssl's `x509 -req` makes a version 1 certificate.
    openssl(
        d,
        "req -newkey rsa:2048 -nodes -subj /CN=admin -keyout v1.key -out v1.csr",
    );
    openssl(d, "x509 -req -in v1.csr -CA other-ca.crt -CAkey other-ca.key -CAcreateserial -days 2 -out v1.crt");
    let v1 = kubeconfig_with(
        &k,
        d,
        "v1-client",
        "token:",
        &format!(
            "client-certificate-data: {}\nclient-key-data: {}",
            base64_of(&d.join("v1.crt")),
            base64_of(&d.join("v1.key"))
        ),
    );
    // The first name listed under `section` (`clusters:`, `users:`).
    let first_of = |path: &Path, section: &str| {
        let text = std::fs::read_to_string(path).unwrap();
        let after = &text[text.find(section).unwrap()..];
        after
            .lines()
            .find_map(|l| l.trim().strip_prefix("- name: "))
            .unwrap()
            .to_owned()
    };
    let cases = [
        (
            &wrong_ca,
            format!(
                "the server's certificate is not signed by the CA in certificate-authority-data \
                 of cluster {:?} in {}: UnknownIssuer",
                first_of(&wrong_ca, "clusters:"),
                wrong_ca.display()
            ),
        ),
        (
            &no_ca,
            format!(
                "certificate-authority-data of cluster {:?} in {} holds no PEM CERTIFICATE block",
                first_of(&no_ca, "clusters:"),
                no_ca.display()
            ),
        ),
        (
            &v1,
            format!(
                "the client certificate in client-certificate-data of user {:?} in {} cannot be \
                 used: it is not an X.509 v3 certificate (UnsupportedCertVersion)",
                first_of(&v1, "users:"),
                v1.display()
            ),
        ),
    ];
    for (kubeconfig, why) in &cases {
        let conf = network(
            kubeconfig,
            "ipam-rs",
            "n",
            json!({"ranges": [[{"subnet": "10.6.0.0/24"}]]}),
        );
        for command in ["ADD", "DEL"] {
            let started = Instant::now();
            let r = call(command, "c1", &conf).run();
            let took = started.elapsed();
            assert_eq!(
                r.code(),
                Some(5),
                "{command} with {}: {r:#?}",
                kubeconfig.display()
            );
            assert!(
                r.details().ends_with(why.as_str()),
                "{command}: {:?} does not end with {why:?}",
                r.details()
            );
            r.assert_cause_once();
            assert!(
                took < Duration::from_secs(5),
                "{command} took {took:?}: retried?"
            );
        }
        let (status, _, err) = run_with_stdin(
            Command::new(common::ipamctl())
                .arg("--kubeconfig")
                .arg(kubeconfig)
                .args(["get", "ippools"]),
            "",
        );
        assert_eq!(status, 1, "{err}");
        assert!(
            err.trim_end().ends_with(why.as_str()) && err.trim_end().lines().count() == 1,
            "{err}"
        );
    }
}

/// A Pod named in `CNI_ARGS` must have a name Kubernetes could give it: kube puts the name
/// into the request's path unescaped, and `p-good?x=1` read Pod `p-good` (its annotation
/// chose the pool, its UID was recorded). Now such a name is a bad environment (code 4,
/// naming the variable and the value) and nothing is read nor written; the Pod's own name
/// still works.
#[test]
fn a_pod_name_kubernetes_could_not_give_reads_no_pod() {
    let Some(k) = cluster() else { return };
    let ns = namespace(&k);
    let annotated = unique("escape-pool");
    let manifest = format!(
        "apiVersion: ipam.rs/v1alpha1\nkind: IPPool\nmetadata:\n  name: {annotated}\nspec:\n  subnet: 10.8.0.0/24\n  ips:\n  - 10.8.0.10-10.8.0.20\n"
    );
    assert_eq!(ipamctl(&k, &ns, &["apply", "-f", "-"], &manifest).0, 0);
    kubectl(&k, &["-n", &ns, "create", "serviceaccount", "default"], "");
    let pod = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p-good\n  namespace: {ns}\n  annotations:\n    ipam.rs/ippool: '{{\"ipv4\": [\"{annotated}\"]}}'\nspec:\n  automountServiceAccountToken: false\n  containers:\n  - name: web\n    image: example.invalid/web\n"
    );
    kubectl(&k, &["apply", "-f", "-"], &pod);
    // Only the Pod's annotation makes this network usable: its own pool does not exist.
    let missing = unique("no-such-pool");
    let conf = network(&k, &ns, "node-a", json!({"ippools": {"ipv4": [missing]}}));
    let long = "p".repeat(254);
    for name in [
        "p-good?x=1",
        "p-good#frag",
        "p good",
        "p-good/../p-good",
        long.as_str(),
    ] {
        let r = call("ADD", "escaper", &conf)
            .var(
                "CNI_ARGS",
                &format!("K8S_POD_NAMESPACE={ns};K8S_POD_NAME={name}"),
            )
            .run();
        assert_eq!(r.code(), Some(4), "{name}: {r:#?}");
        assert!(
            r.msg().starts_with(&format!(
                "CNI_ARGS: K8S_POD_NAME={name:?}: is not a Kubernetes Pod name: "
            )),
            "{r:#?}"
        );
    }
    let (_, listed, _) = ipamctl(&k, &ns, &["get", "allocations", "-o", "json"], "");
    assert_eq!(
        serde_json::from_str::<Value>(&listed).unwrap()["items"],
        json!([]),
        "{listed}"
    );
    let good = call("ADD", "escaper", &conf)
        .var(
            "CNI_ARGS",
            &format!("K8S_POD_NAMESPACE={ns};K8S_POD_NAME=p-good"),
        )
        .run()
        .ok();
    assert_eq!(
        good.addresses(),
        ["10.8.0.10/24"],
        "the Pod's annotation chose the pool"
    );
    call("DEL", "escaper", &conf).run().ok();
    assert_eq!(ipamctl(&k, &ns, &["delete", "ippool", &annotated], "").0, 0);
}

/// Ten nodes (plugin processes with distinct `nodeName`s) make 100 ADDs each, all at once,
/// into one pool with a ReservedIP: every address distinct, none reserved; then every DEL
/// releases everything. Prints the wall time and, from the API server's own metrics, the
/// requests, writes and conflicts per ADD (a benchmark's figures, not assertions on speed).
#[test]
fn many_nodes_one_pool() {
    many_nodes(false);
}

/// [`many_nodes_one_pool`] with a node agent per node answering the plugin: the same
/// guarantees, and the figures side by side.
#[test]
fn many_nodes_one_pool_through_agents() {
    many_nodes(true);
}

fn many_nodes(through_agents: bool) {
    let Some(k) = cluster() else { return };
    const NODES: usize = 10;
    // `IPAM_BENCH_PER_NODE` sets the ADDs each node makes (ipam-cni/bench/many-nodes.sh
    // passes it on): 1,000 measures an agent's memory with 10,000 allocations in the cluster.
    let per_node: usize = std::env::var("IPAM_BENCH_PER_NODE")
        .ok()
        .map(|v| v.parse().expect("IPAM_BENCH_PER_NODE is a number"))
        .unwrap_or(100);
    let ns = namespace(&k);
    let sockets = tempfile::tempdir().unwrap();
    // One per node, killed when the test ends.
    let mut agents = Vec::new();
    let node_network = |n: usize, pool: &str| {
        let mut conf = network(
            &k,
            &ns,
            &format!("node-{n}"),
            json!({"ippools": {"ipv4": [pool]}}),
        );
        if through_agents {
            let socket = sockets.path().join(format!("node-{n}/agent.sock"));
            conf["ipam"]["agent"] = json!(socket.to_str().unwrap());
        }
        conf
    };
    let (pool, reserved) = (unique("many-pool"), unique("many-reserved"));
    // 3,838 addresses, or the whole /16 where the nodes need more.
    let last = if NODES * per_node <= 3_000 {
        "10.40.15.254"
    } else {
        "10.40.255.254"
    };
    let manifest = format!(
        "apiVersion: ipam.rs/v1alpha1\nkind: ReservedIP\nmetadata:\n  name: {reserved}\nspec:\n  ips:\n  - 10.40.1.0-10.40.1.255\n---\n\
         apiVersion: ipam.rs/v1alpha1\nkind: IPPool\nmetadata:\n  name: {pool}\nspec:\n  subnet: 10.40.0.0/16\n  ips:\n  - 10.40.0.1-{last}\n"
    );
    assert_eq!(ipamctl(&k, &ns, &["apply", "-f", "-"], &manifest).0, 0);
    // Each agent's metrics, where it counts its calls' API requests.
    let mut agent_metrics = Vec::new();
    if through_agents {
        for n in 0..NODES {
            let conf = node_network(n, &pool);
            let ipam = conf["ipam"].as_object().unwrap();
            let socket = Path::new(ipam["agent"].as_str().unwrap());
            let mut args = common::agent_args(ipam).unwrap();
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let at = format!("127.0.0.1:{port}");
            args.extend(["--metrics".to_owned(), at.clone()]);
            agents.push(common::start_agent(&args, socket));
            agent_metrics.push(at);
        }
    }
    let counters = || metrics(&k);
    let before = counters();
    let started = Instant::now();
    let got: Vec<Vec<String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..NODES)
            .map(|n| {
                let conf = node_network(n, &pool);
                s.spawn(move || {
                    (0..per_node)
                        .map(|i| {
                            let r = call("ADD", &format!("n{n}-c{i}"), &conf).run().ok();
                            assert!(
                                !r.stderr.contains("doing the call here"),
                                "the agent did not answer: {}",
                                r.stderr
                            );
                            r.addresses()[0].clone()
                        })
                        .collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let add_time = started.elapsed();
    let after = counters();
    let all: Vec<&String> = got.iter().flatten().collect();
    let distinct: BTreeSet<&String> = all.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        NODES * per_node,
        "an address was handed out twice"
    );
    assert!(
        all.iter().all(|a| !a.starts_with("10.40.1.")),
        "a reserved address was handed out"
    );
    let adds = (NODES * per_node) as f64;
    if through_agents {
        // The agents' caches: 2 writes and the 2 reads after them (the pool and the
        // ReservedIPs), against 8 requests per ADD without them; as the agents counted them
        // (the API server's counters include whatever else runs beside this test).
        let (mut calls, mut requests) = (0.0, 0.0);
        for at in &agent_metrics {
            let text = http_get(at, "/metrics");
            let series = |name: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(&format!("{name}{{command=\"ADD\"}} ")))
                    .and_then(|v| v.trim().parse::<f64>().ok())
                    .unwrap_or_else(|| panic!("no {name} for ADD in\n{text}"))
            };
            calls += series("ipam_rs_agent_call_api_writes_count");
            requests += series("ipam_rs_agent_call_api_reads_sum")
                + series("ipam_rs_agent_call_api_writes_sum");
        }
        assert!(calls >= adds, "the agents counted {calls} ADDs of {adds}");
        let per_add = requests / calls;
        eprintln!(
            "many_nodes_one_pool (through agents): {per_add:.2} API requests per ADD, as the agents counted them"
        );
        assert!(
            per_add < 4.5,
            "{per_add:.2} API requests per ADD through the agents"
        );
        let (rss, peak) = agents
            .iter()
            .map(|a| a.memory_kib())
            .fold((0, 0), |m, a| (m.0.max(a.0), m.1.max(a.1)));
        eprintln!(
            "many_nodes_one_pool (through agents): agent RSS with {per_node} allocations on its node and {} in the cluster: {:.1} MiB (peak {:.1} MiB), the most of any agent",
            NODES * per_node,
            rss as f64 / 1024.0,
            peak as f64 / 1024.0
        );
    }
    eprintln!(
        "many_nodes_one_pool{}: {NODES} nodes x {per_node} ADDs in {:.1} s ({:.1} ms per ADD per node); \
         {:.2} API requests per ADD, {:.2} API writes per ADD, {:.3} conflicts (409) per ADD",
        if through_agents { " (through agents)" } else { "" },
        add_time.as_secs_f64(),
        add_time.as_secs_f64() * 1000.0 / per_node as f64,
        (after.requests - before.requests) / adds,
        (after.writes - before.writes) / adds,
        (after.conflicts - before.conflicts) / adds,
    );
    std::thread::scope(|s| {
        for n in 0..NODES {
            let conf = node_network(n, &pool);
            s.spawn(move || {
                for i in 0..per_node {
                    call("DEL", &format!("n{n}-c{i}"), &conf).run().ok();
                }
            });
        }
    });
    let left = ipamctl(&k, &ns, &["get", "allocations", "-o", "json"], "").1;
    assert_eq!(
        serde_json::from_str::<Value>(&left).unwrap()["items"],
        json!([])
    );
    assert_eq!(ipamctl(&k, &ns, &["delete", "ippool", &pool], "").0, 0);
    assert_eq!(
        ipamctl(&k, &ns, &["delete", "reservedip", &reserved], "").0,
        0
    );
}

/// `(writes, conflicts)` the API server has answered for the allocation objects so far,
/// from its `apiserver_request_total` metric.
/// The API server's request counters (`apiserver_request_total`), summed.
struct Counters {
    /// Requests of any verb on any resource (a `/metrics` read is not one).
    requests: f64,
    /// Writes to the allocation objects (blocks, owners, cursors).
    writes: f64,
    /// Those of them refused with 409.
    conflicts: f64,
}

fn metrics(kubeconfig: &Path) -> Counters {
    let text = kubectl(kubeconfig, &["get", "--raw", "/metrics"], "");
    let mut counters = Counters {
        requests: 0.0,
        writes: 0.0,
        conflicts: 0.0,
    };
    for line in text
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
    {
        let n: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        if !line.contains(",resource=\"\"") {
            counters.requests += n;
        }
        let ours = ["ipamblocks", "ipamowners", "ipamcursors"]
            .iter()
            .any(|r| line.contains(&format!("resource=\"{r}\"")));
        let write = ["\"POST\"", "\"PUT\"", "\"DELETE\"", "\"PATCH\""]
            .iter()
            .any(|v| line.contains(&format!("verb={v}")));
        if !(ours && write) {
            continue;
        }
        counters.writes += n;
        if line.contains("code=\"409\"") {
            counters.conflicts += n;
        }
    }
    counters
}

/// 120 KB Pod names (podman passes `K8S_POD_NAME` without a namespace, as given): twelve
/// holders fill one block's object, and the thirteenth ADD is refused at once with code 5,
/// naming the field, rather than retried until code 11.
#[test]
fn an_add_whose_holder_would_overflow_its_block_names_the_field() {
    let Some(k) = cluster() else { return };
    let ns = namespace(&k);
    let pool = unique("bigname");
    // Pools are cluster-wide: a subnet of this run's own.
    let net = std::process::id() % 250;
    let manifest = format!(
        "apiVersion: ipam.rs/v1alpha1\nkind: IPPool\nmetadata: {{name: {pool}}}\nspec: {{subnet: 10.44.{net}.0/24, ips: [10.44.{net}.0/26]}}\n"
    );
    let (status, _, err) = ipamctl(&k, &ns, &["apply", "-f", "-"], &manifest);
    assert_eq!(status, 0, "{err}");
    let conf = json!({"cniVersion": "1.0.0", "name": "size-net", "type": "macvlan", "ipam": {
        "type": "ipam-cni",
        "store": {"kubernetes": {"kubeconfig": k.to_str().unwrap(), "nodeName": "node-a", "namespace": ns}},
        "ippools": {"ipv4": [pool]},
    }});
    let name = |i: usize| format!("K8S_POD_NAME=p{i:02}-{}", "x".repeat(120_000));
    let mut granted = 0;
    let refused = loop {
        let reply = call("ADD", &format!("big-{granted}"), &conf)
            .var("CNI_ARGS", &name(granted))
            .run();
        if reply.status != Some(0) {
            break reply;
        }
        granted += 1;
        assert!(granted < 20, "never refused");
    };
    assert_eq!(granted, 12, "{refused:#?}");
    assert_eq!(refused.code(), Some(5), "{refused:#?}");
    let msg = refused.msg();
    assert!(
        msg.starts_with(&format!(
            "store refuses block/10.44.{net}.0/26: it would be "
        )),
        "{msg}"
    );
    assert!(
        msg.ends_with(
            "here K8S_POD_NAME is 120004 bytes (a Kubernetes Pod name has at most 253 characters)"
        ),
        "{msg}"
    );
    // Nothing of it is held; a holder that fits still gets an address.
    let (_, out, _) = ipamctl(&k, &ns, &["get", "allocations", "--pool", &pool], "");
    assert_eq!(out.lines().count(), 1 + 12, "{out}");
    call("ADD", "small", &conf)
        .var("CNI_ARGS", "K8S_POD_NAME=small")
        .run()
        .ok();
    let (status, _, err) = ipamctl(&k, &ns, &["delete", "ippool", &pool, "--force"], "");
    assert_eq!(status, 0, "{err}");
}

/// The body of an HTTP GET of `path` at `at` (`HOST:PORT`), as HTTP/1.0: the agent's metrics.
fn http_get(at: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(at).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {at}\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    assert!(
        head.starts_with("HTTP/1.") && head.contains(" 200 "),
        "GET {path} at {at}: {head}"
    );
    body.to_owned()
}
