//! Helpers shared by the integration tests: run the real `ipam-cni` binary as a runtime
//! does (environment + stdin), run `ipamctl`, and read the store they wrote through the
//! library. What other packages' tests share too is `ipam-test-support`'s.

#![allow(dead_code)] // each test file uses a different subset

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ipam_core::backend::{Key, KeyRange};
use ipam_core::Family;
use ipam_core::{Ipam, Store};
use ipam_store::{open, StoreChoice};
use serde_json::{json, Value};

/// The plugin binary cargo built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_ipam-cni");

#[allow(unused_imports)] // each test file uses a different subset
pub use ipam_test_support::{
    kubectl_ok, kubectl_with, namespace, run_with_stdin, test_cluster, unique,
};

/// The `ipamctl` binary (of the `ipamctl` package, so cargo does not hand it to these tests:
/// [`ipam_test_support::binary`] builds it if it is not up to date).
pub fn ipamctl() -> PathBuf {
    ipam_test_support::binary("ipamctl", "ipamctl")
}

/// What one invocation printed and how it exited.
#[derive(Debug)]
pub struct Reply {
    /// stdout parsed as JSON (`Value::Null` when empty).
    pub json: Value,
    /// The raw stdout.
    pub stdout: String,
    /// stderr, for failure messages.
    pub stderr: String,
    /// The exit code (`None` when killed by a signal).
    pub status: Option<i32>,
}

impl Reply {
    /// The error code, if stdout is an error object.
    pub fn code(&self) -> Option<u64> {
        self.json.get("code").and_then(Value::as_u64)
    }

    /// The error message, if any.
    pub fn msg(&self) -> &str {
        self.json.get("msg").and_then(Value::as_str).unwrap_or("")
    }

    /// The error's details (the cause), if any.
    pub fn details(&self) -> &str {
        self.json
            .get("details")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// Panics unless `msg` and `details` each say their part once: runtimes print them
    /// joined (podman: "msg: details"), so a cause in both reads twice.
    pub fn assert_cause_once(&self) {
        let (msg, details) = (self.msg(), self.details());
        assert!(
            details.is_empty() || !msg.contains(details),
            "msg repeats details: {msg:?} / {details:?}"
        );
        let links: Vec<&str> = details.split(": ").collect();
        for pair in links.windows(2) {
            assert_ne!(pair[0], pair[1], "details repeat a cause: {details:?}");
        }
    }

    /// The addresses of an ADD result.
    pub fn addresses(&self) -> Vec<String> {
        self.json["ips"]
            .as_array()
            .map(|ips| {
                ips.iter()
                    .map(|ip| ip["address"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Panics with everything known unless the invocation succeeded.
    pub fn ok(self) -> Reply {
        assert_eq!(self.status, Some(0), "expected success: {self:#?}");
        self
    }
}

/// An invocation being built: command, attachment, extra variables.
pub struct Call<'a> {
    env: Vec<(&'a str, String)>,
    remove: Vec<&'a str>,
    stdin: Vec<u8>,
}

/// Starts an invocation of `command` for container `id` on `eth0`, with `conf` on stdin.
pub fn call<'a>(command: &str, id: &str, conf: &Value) -> Call<'a> {
    Call {
        env: vec![
            ("CNI_COMMAND", command.to_owned()),
            ("CNI_CONTAINERID", id.to_owned()),
            ("CNI_IFNAME", "eth0".to_owned()),
            ("CNI_NETNS", "/var/run/netns/none".to_owned()),
            ("CNI_PATH", "/nonexistent".to_owned()),
        ],
        remove: Vec::new(),
        stdin: conf.to_string().into_bytes(),
    }
}

impl<'a> Call<'a> {
    /// Sets (or overrides) a variable.
    pub fn var(mut self, k: &'a str, v: &str) -> Self {
        self.env.retain(|(n, _)| *n != k);
        self.env.push((k, v.to_owned()));
        self
    }

    /// Leaves a variable unset.
    pub fn unset(mut self, k: &'a str) -> Self {
        self.env.retain(|(n, _)| *n != k);
        self.remove.push(k);
        self
    }

    /// Replaces stdin with raw bytes.
    pub fn stdin(mut self, bytes: Vec<u8>) -> Self {
        self.stdin = bytes;
        self
    }

    /// Starts the process, writes stdin and closes it.
    pub fn spawn(self) -> Child {
        let input = routed(&self.stdin);
        let mut cmd = Command::new(BIN);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn ipam-cni");
        let mut stdin = child.stdin.take().expect("stdin");
        // A process killed early closes its stdin: a failed write is part of the test.
        let _ = stdin.write_all(&input);
        drop(stdin);
        child
    }

    /// Runs to completion.
    pub fn run(self) -> Reply {
        finish(self.spawn())
    }
}

/// Waits for a child and collects its reply.
pub fn finish(child: Child) -> Reply {
    let out = child.wait_with_output().expect("wait for ipam-cni");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let json = if stdout.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {stdout:?}"))
    };
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_answered_as_asked(&stderr);
    Reply {
        json,
        stdout,
        stderr,
        status: out.status.code(),
    }
}

/// A network configuration of `version` for network `name` with the `ipam` section given
/// (its `type` and `dataDir` are filled in).
pub fn netconf(version: &str, name: &str, dir: &Path, mut ipam: Value) -> Value {
    ipam["type"] = json!("ipam-cni");
    ipam["dataDir"] = json!(dir.to_str().unwrap());
    json!({"cniVersion": version, "name": name, "type": "bridge", "ipam": ipam})
}

/// Opens the store in `dir` the way the plugin does (redb), for setup and inspection. Hold
/// it briefly: while it is open, plugin processes wait.
pub fn ipam_at(dir: &Path) -> Ipam<Box<dyn Store>> {
    Ipam::new(
        open(&StoreChoice::Redb, dir, Duration::from_secs(30))
            .expect("open store")
            .store,
    )
}

/// Every record of the store, with versions, as text: equal dumps mean an unchanged store.
pub fn dump(dir: &Path) -> String {
    let ipam = ipam_at(dir);
    let store = ipam.store();
    let mut out = String::new();
    for range in [
        KeyRange::Pools,
        KeyRange::ReservedIps,
        KeyRange::Owners,
        KeyRange::Cursors,
        KeyRange::all_blocks(Family::V4),
        KeyRange::all_blocks(Family::V6),
    ] {
        for (key, v) in pollster::block_on(store.scan(&range)).expect("scan") {
            out.push_str(&format!("{key} v{:?} {:?}\n", v.version, v.value));
        }
    }
    if let Some(v) = pollster::block_on(store.get(&Key::ReservedSummary)).unwrap() {
        out.push_str(&format!("summary v{:?} {:?}\n", v.version, v.value));
    }
    out
}

/// `(address, owner)` of every allocation in the store.
pub fn holders(dir: &Path) -> Vec<(String, String)> {
    let ipam = ipam_at(dir);
    pollster::block_on(ipam.allocations(None))
        .expect("allocations")
        .into_iter()
        .map(|a| (a.address.to_string(), a.owner.container_id().to_owned()))
        .collect()
}

/// `ipamctl` on the Kubernetes store: `--kubeconfig`, `--namespace` (where the allocation
/// objects live), then `args`.
pub fn ipamctl_on_cluster(
    kubeconfig: &Path,
    namespace: &str,
    args: &[&str],
    stdin: &str,
) -> (i32, String, String) {
    ipam_test_support::ipamctl_on_cluster(&ipamctl(), kubeconfig, namespace, args, stdin)
}

/// How this thread's calls reach the store: the plugin on its own, or through a node agent.
/// Each test runs on a thread of its own, so a suite runs both ways by setting it first
/// ([`both_paths!`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallPath {
    /// The plugin opens the store.
    Direct,
    /// An `ipam-agent` of the call's store answers it (one per store, started on first use,
    /// killed when the test's thread ends).
    Agent,
}

thread_local! {
    static PATH: std::cell::Cell<CallPath> = const { std::cell::Cell::new(CallPath::Direct) };
    static AGENTS: std::cell::RefCell<Agents> = std::cell::RefCell::new(Agents::default());
}

/// Panics if a call meant for an agent (on [`CallPath::Agent`]) was made by the plugin
/// itself, as its stderr says: it would pass for one the agent answered.
pub fn assert_answered_as_asked(stderr: &str) {
    assert!(
        path() == CallPath::Direct || !stderr.contains("doing the call here"),
        "the agent did not answer: {stderr}"
    );
}

/// Makes this thread's calls go `path`.
pub fn use_path(path: CallPath) {
    PATH.with(|p| p.set(path));
}

/// This thread's path.
pub fn path() -> CallPath {
    PATH.with(std::cell::Cell::get)
}

/// The agents of this thread, by store: killed when it ends.
#[derive(Default)]
struct Agents {
    /// `(store options, socket, process)`.
    running: Vec<(Vec<String>, PathBuf, AgentProcess)>,
    sockets: Option<tempfile::TempDir>,
}

/// An `ipam-agent` process, killed when dropped.
pub struct AgentProcess(Child);

impl AgentProcess {
    /// Its resident memory now and at its peak, in KiB (`VmRSS` and `VmHWM` of
    /// `/proc/PID/status`).
    pub fn memory_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.0.id()))
            .expect("the agent's /proc status");
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or_else(|| panic!("no {name} in {status}"))
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// Kills it now (`kill -9`).
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The agent binary.
pub fn agent_binary() -> PathBuf {
    ipam_test_support::binary("ipam-agent", "ipam-agent")
}

/// Starts `ipam-agent` with the store options `store_args` on `socket`, and waits until it
/// listens.
pub fn start_agent(store_args: &[String], socket: &Path) -> AgentProcess {
    let mut child = Command::new(agent_binary())
        .args(store_args)
        .arg("--socket")
        .arg(socket)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn ipam-agent");
    ipam_test_support::wait_until_listening(&mut child, socket);
    AgentProcess(child)
}

/// The `ipam-agent` options that serve the store of the `ipam` section `ipam`, if the test
/// harness knows it: redb and sled by `dataDir`, Kubernetes by its kubeconfig, namespace,
/// API and node.
pub fn agent_args(ipam: &serde_json::Map<String, Value>) -> Option<Vec<String>> {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    let embedded = |store: &str| {
        let dir = text(ipam.get("dataDir"))?;
        Some(vec![
            "--store".to_owned(),
            store.to_owned(),
            "--data-dir".to_owned(),
            dir,
        ])
    };
    match ipam.get("store") {
        None | Some(Value::Null) => embedded("redb"),
        Some(Value::String(s)) if s == "redb" || s == "sled" => embedded(s),
        Some(Value::Object(o)) => {
            let k = o.get("kubernetes")?.as_object()?;
            let mut args = vec!["--store".to_owned(), "kubernetes".to_owned()];
            for (field, flag) in [
                ("kubeconfig", "--kubeconfig"),
                ("namespace", "--namespace"),
                ("api", "--api"),
                ("nodeName", "--node"),
            ] {
                if let Some(value) = text(k.get(field)) {
                    args.extend([flag.to_owned(), value]);
                }
            }
            Some(args)
        }
        _ => None,
    }
}

/// stdin as this thread's path sends it: on [`CallPath::Agent`], a configuration without
/// `ipam.agent` gets one, pointing at an agent of its store (started if needed). Anything
/// else goes as it is.
pub fn routed(stdin: &[u8]) -> Vec<u8> {
    if path() == CallPath::Direct {
        return stdin.to_vec();
    }
    let Ok(mut conf) = serde_json::from_slice::<Value>(stdin) else {
        return stdin.to_vec();
    };
    let Some(ipam) = conf.get_mut("ipam").and_then(Value::as_object_mut) else {
        return stdin.to_vec();
    };
    if ipam.contains_key("agent") {
        return stdin.to_vec();
    }
    let Some(args) = agent_args(ipam) else {
        return stdin.to_vec();
    };
    let socket = AGENTS.with(|agents| {
        let mut agents = agents.borrow_mut();
        if let Some((_, socket, _)) = agents.running.iter().find(|(a, _, _)| *a == args) {
            return socket.clone();
        }
        let n = agents.running.len();
        let sockets = agents
            .sockets
            .get_or_insert_with(|| tempfile::tempdir().expect("a directory for sockets"))
            .path()
            .to_owned();
        let socket = sockets.join(format!("agent-{n}")).join("agent.sock");
        let agent = start_agent(&args, &socket);
        agents.running.push((args, socket.clone(), agent));
        socket
    });
    ipam.insert(
        "agent".to_owned(),
        json!(socket.to_str().expect("a UTF-8 path")),
    );
    conf.to_string().into_bytes()
}

/// Runs each test given twice, in modules `direct` and `through_agent`: once with the
/// plugin on its own, once with every call answered by a node agent of its store.
/// The answers must be the same: the agent runs the plugin's code.
#[macro_export]
macro_rules! both_paths {
    ($($(#[$meta:meta])* fn $name:ident() $body:block)*) => {
        mod direct {
            #[allow(unused_imports)]
            use super::*;
            $( $(#[$meta])* #[test] fn $name() {
                $crate::common::use_path($crate::common::CallPath::Direct);
                $body
            } )*
        }
        mod through_agent {
            #[allow(unused_imports)]
            use super::*;
            $( $(#[$meta])* #[test] fn $name() {
                $crate::common::use_path($crate::common::CallPath::Agent);
                $body
            } )*
        }
    };
}
