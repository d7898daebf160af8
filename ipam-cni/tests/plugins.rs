//! Through Debian's real `bridge` and `macvlan` plugins (package containernetworking-plugins),
//! in network namespaces this test creates: the plugin runs in a "host" namespace of ours and
//! puts the interface into a "container" namespace of ours, so nothing touches the machine's
//! own network. No traffic is sent.
//!
//! Needs root, `ip` (iproute2) and /usr/lib/cni (or `CNI_PLUGINS_DIR`). Without them the tests print why and skip,
//! except under `CI=true`, where a missing prerequisite fails them.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{holders, ipam_at, Reply, BIN};
use ipam_core::{IpPool, IpPoolSpec, ObjectName, ReservedIp, ReservedIpSpec};
use serde_json::{json, Value};

/// Where Debian puts the plugins; `CNI_PLUGINS_DIR` overrides it.
fn plugins_dir() -> String {
    std::env::var("CNI_PLUGINS_DIR").unwrap_or_else(|_| "/usr/lib/cni".into())
}

/// Whether the prerequisites are there; `Err` says what is missing.
fn prerequisites(test: &str) -> Result<(), String> {
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map_err(|e| format!("id -u: {e}"))?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Err("not running as root (ip netns needs it)".into());
    }
    for plugin in ["bridge", "macvlan"] {
        let dir = plugins_dir();
        if !Path::new(&dir).join(plugin).exists() {
            return Err(format!(
                "{dir}/{plugin} is missing (apt-get install containernetworking-plugins)"
            ));
        }
    }
    // One probe per test: the tests of this file run in parallel in one process.
    let probe = format!("ipamcni-probe-{test}-{}", std::process::id());
    let made = Command::new("ip").args(["netns", "add", &probe]).status();
    match made {
        Ok(s) if s.success() => {
            let _ = Command::new("ip").args(["netns", "del", &probe]).status();
            Ok(())
        }
        Ok(s) => Err(format!("`ip netns add` failed ({s})")),
        Err(e) => Err(format!("cannot run `ip` (apt-get install iproute2): {e}")),
    }
}

/// Runs the test body only where it can run; under CI a missing prerequisite is a failure.
fn needs_namespaces(test: &str) -> bool {
    match prerequisites(test) {
        Ok(()) => true,
        Err(why) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true and a prerequisite is missing: {why}")
        }
        Err(why) => {
            eprintln!("SKIPPED: {why}");
            false
        }
    }
}

/// Network namespaces made by this test, deleted when it ends (also on panic).
struct Netns(Vec<String>);

impl Netns {
    fn new(names: &[&str]) -> Netns {
        let mut made = Netns(Vec::new());
        for n in names {
            let name = format!("ipamcni-{n}-{}", std::process::id());
            ip(&["netns", "add", &name]);
            made.0.push(name);
        }
        made
    }

    fn name(&self, i: usize) -> &str {
        &self.0[i]
    }

    fn path(&self, i: usize) -> String {
        format!("/var/run/netns/{}", self.0[i])
    }

    fn delete(&mut self, i: usize) {
        ip(&["netns", "del", &self.0[i]]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `ip -o addr` of `dev` inside namespace `ns`, or `None` if the device does not exist.
fn addresses_in(ns: &str, dev: &str) -> Option<String> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "ip", "-o", "addr", "show", "dev", dev])
        .output()
        .expect("run ip");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a real plugin inside the "host" namespace `host` as a runtime would, with our binary
/// found through CNI_PATH next to Debian's plugins.
fn plugin(plugin: &str, command: &str, host: &str, netns: &str, id: &str, conf: &Value) -> Reply {
    let bin_dir = PathBuf::from(BIN).parent().unwrap().to_path_buf();
    let plugins = plugins_dir();
    let mut child = Command::new("ip")
        .args(["netns", "exec", host, &format!("{plugins}/{plugin}")])
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", id)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_NETNS", netns)
        .env("CNI_PATH", format!("{}:{plugins}", bin_dir.display()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run plugin");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(conf.to_string().as_bytes())
        .unwrap();
    common::finish(child)
}

fn reserve(dir: &Path, name: &str, ips: &[&str]) {
    let ipam = ipam_at(dir);
    pollster::block_on(
        ipam.apply_reserved_ip(
            ReservedIp::new(
                name,
                ReservedIpSpec {
                    ips: ips.iter().map(|s| s.to_string()).collect(),
                    ip_version: None,
                },
            )
            .unwrap(),
        ),
    )
    .unwrap();
}

/// `(file, cniVersion, type)` of every network configuration written out in the README, the
/// docs and the examples: a JSON object whose `cniVersion` is followed, before any nested
/// object, by its `type`.
fn documented_configurations() -> Vec<(String, String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = vec![root.join("README.md")];
    for dir in ["docs", "examples", "ipam-cni/examples", "ipam-cni/bench"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                files.push(path);
            }
        }
    }
    let value_after = |text: &str, key: &str| -> Option<String> {
        let rest = text.split_once(key)?.1.trim_start().strip_prefix(':')?;
        let rest = rest.trim_start().strip_prefix('"')?;
        Some(rest.split_once('"')?.0.to_owned())
    };
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (at, _) in text.match_indices("\"cniVersion\"") {
            let object = &text[at..];
            let object = &object[..object.find(['{', '}']).unwrap_or(object.len())];
            if let (Some(version), Some(kind)) = (
                value_after(object, "\"cniVersion\""),
                value_after(object, "\"type\""),
            ) {
                found.push((file.display().to_string(), version, kind));
            }
        }
    }
    found
}

/// Every configuration the docs show for one of Debian's plugins uses a `cniVersion` that
/// plugin accepts (its own VERSION answer): Debian's `bridge` 1.1.1 refuses 1.1.0, so a
/// reader copying a 1.1.0 example would fail before ipam-cni is even called.
#[test]
fn documented_configurations_suit_the_plugins_they_name() {
    let dir = plugins_dir();
    if !Path::new(&dir).join("bridge").exists() {
        let why = format!("{dir}/bridge is missing (apt-get install containernetworking-plugins)");
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("CI=true and a prerequisite is missing: {why}");
        }
        eprintln!("SKIPPED: {why}");
        return;
    }
    let found = documented_configurations();
    assert!(
        found
            .iter()
            .any(|(f, _, t)| f.ends_with("README.md") && t == "bridge"),
        "the README's example was not found: {found:?}"
    );
    for (file, version, kind) in found {
        let bin = Path::new(&dir).join(&kind);
        if !bin.exists() {
            continue; // not one of Debian's plugins (a doc may name any)
        }
        let mut child = Command::new(&bin)
            .env("CNI_COMMAND", "VERSION")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(br#"{"cniVersion": "0.4.0"}"#)
            .unwrap();
        let answer = common::finish(child).ok();
        let supported = answer.json["supportedVersions"].as_array().unwrap();
        assert!(
            supported.iter().any(|v| v == version.as_str()),
            "{file}: a {kind} configuration with cniVersion {version}, which Debian's {kind} \
             refuses (it supports {supported:?})"
        );
    }
}

/// bridge + ipam-cni: the address lands on eth0 in the container namespace; a ReservedIP in
/// the store is honoured; a second container gets "used up" (code 100) through the bridge
/// plugin; DEL removes the interface and releases the address, also once the namespace is
/// gone.
#[test]
fn bridge_plugin_with_ipam_cni() {
    if !needs_namespaces("br") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut ns = Netns::new(&["br-host", "br-c1", "br-c2"]);
    reserve(
        dir.path(),
        "test-reservedip",
        &["198.51.100.10-198.51.100.11"],
    );
    let conf = json!({
        "cniVersion": "1.0.0", "name": "brnet", "type": "bridge", "bridge": "ipamcnibr0",
        "ipam": {"type": "ipam-cni", "dataDir": dir.path(),
                 "ranges": [[{"subnet": "198.51.100.0/24", "rangeStart": "198.51.100.10",
                              "rangeEnd": "198.51.100.12"}]]}
    });
    let (host, c1, c2) = (ns.name(0).to_owned(), ns.path(1), ns.path(2));

    let r = plugin("bridge", "ADD", &host, &c1, "ctr1", &conf);
    assert_eq!(r.status, Some(0), "{r:#?}");
    assert_eq!(r.json["ips"][0]["address"], "198.51.100.12/24");
    assert_eq!(r.json["ips"][0]["gateway"], "198.51.100.1");
    let shown = addresses_in(ns.name(1), "eth0").expect("eth0 in the container namespace");
    assert!(shown.contains("inet 198.51.100.12/24"), "{shown}");

    let r = plugin("bridge", "ADD", &host, &c2, "ctr2", &conf);
    assert_ne!(r.status, Some(0), "{r:#?}");
    assert_eq!(r.code(), Some(100), "{r:#?}");
    assert!(
        r.msg()
            .contains(r#"pool "brnet-0" (total 3, reserved 2, allocated 1, available 0)"#),
        "{}",
        r.msg()
    );
    assert_eq!(
        holders(dir.path()),
        [("198.51.100.12".to_string(), "ctr1".to_string())]
    );

    let r = plugin("bridge", "DEL", &host, &c1, "ctr1", &conf);
    assert_eq!(r.status, Some(0), "{r:#?}");
    assert_eq!(
        addresses_in(ns.name(1), "eth0"),
        None,
        "eth0 still there after DEL"
    );
    assert!(holders(dir.path()).is_empty());

    // ADD again, then DEL after the container's namespace is gone.
    let r = plugin("bridge", "ADD", &host, &c1, "ctr3", &conf);
    assert_eq!(r.status, Some(0), "{r:#?}");
    ns.delete(1);
    let r = plugin("bridge", "DEL", &host, &c1, "ctr3", &conf);
    assert_eq!(r.status, Some(0), "{r:#?}");
    assert!(holders(dir.path()).is_empty());
    let r = plugin("bridge", "DEL", &host, &c1, "ctr3", &conf);
    assert_eq!(r.status, Some(0), "repeated DEL: {r:#?}");
}

/// macvlan + ipam-cni with a pool from the store, the seed document's walk-through: a pool of
/// three addresses, two reserved; the first Pod gets the third, the second waits ("used up");
/// deleting the ReservedIP lets it through at once.
#[test]
fn macvlan_plugin_with_store_pool_and_reserved_ip() {
    if !needs_namespaces("mv") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ns = Netns::new(&["mv-host", "mv-c1", "mv-c2"]);
    let host = ns.name(0).to_owned();
    // The macvlan master: one end of a veth pair inside our host namespace (a dummy device
    // would do, but not every kernel that runs CI has the module).
    ip(&[
        "netns", "exec", &host, "ip", "link", "add", "ipamcni0", "type", "veth", "peer", "name",
        "ipamcni1",
    ]);
    for dev in ["ipamcni0", "ipamcni1"] {
        ip(&["netns", "exec", &host, "ip", "link", "set", dev, "up"]);
    }
    {
        let ipam = ipam_at(dir.path());
        pollster::block_on(
            ipam.apply_pool(
                IpPool::new(
                    "test-ippool",
                    IpPoolSpec {
                        subnet: "203.0.113.0/24".into(),
                        ips: vec!["203.0.113.131-203.0.113.133".into()],
                        gateway: Some("203.0.113.1".into()),
                        ..Default::default()
                    },
                )
                .unwrap(),
            ),
        )
        .unwrap();
    }
    reserve(
        dir.path(),
        "test-reservedip",
        &["203.0.113.131-203.0.113.132"],
    );
    let conf = json!({
        "cniVersion": "1.0.0", "name": "macvlan", "type": "macvlan", "master": "ipamcni0",
        "mode": "bridge",
        "ipam": {"type": "ipam-cni", "dataDir": dir.path(), "ippools": {"ipv4": ["test-ippool"]}}
    });
    let (c1, c2) = (ns.path(1), ns.path(2));

    let r = plugin("macvlan", "ADD", &host, &c1, "pod1", &conf);
    assert_eq!(r.status, Some(0), "{r:#?}");
    let shown = addresses_in(ns.name(1), "eth0").expect("eth0 in pod1's namespace");
    assert!(shown.contains("inet 203.0.113.133/24"), "{shown}");

    let r = plugin("macvlan", "ADD", &host, &c2, "pod2", &conf);
    assert_eq!(r.code(), Some(100), "{r:#?}");
    assert!(r.msg().contains("used up"), "{}", r.msg());
    let shown = addresses_in(ns.name(2), "eth0").unwrap_or_default();
    assert!(
        !shown.contains("inet "),
        "an address after a failed ADD: {shown}"
    );
    // As a runtime does after a failed ADD (Debian's macvlan may leave the link behind).
    let r = plugin("macvlan", "DEL", &host, &c2, "pod2", &conf);
    assert_eq!(r.status, Some(0), "{r:#?}");

    {
        let ipam = ipam_at(dir.path());
        pollster::block_on(ipam.delete_reserved_ip(&ObjectName::new("test-reservedip").unwrap()))
            .unwrap();
    }
    let r = plugin("macvlan", "ADD", &host, &c2, "pod2", &conf);
    assert_eq!(r.status, Some(0), "{r:#?}");
    let shown = addresses_in(ns.name(2), "eth0").expect("eth0 in pod2's namespace");
    assert!(shown.contains("inet 203.0.113.131/24"), "{shown}");

    for (id, netns) in [("pod1", &c1), ("pod2", &c2)] {
        let r = plugin("macvlan", "DEL", &host, netns, id, &conf);
        assert_eq!(r.status, Some(0), "{r:#?}");
    }
    assert!(holders(dir.path()).is_empty());
    assert_eq!(addresses_in(ns.name(1), "eth0"), None);
}
