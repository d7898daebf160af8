//! `ipamctl` as an operator uses it: the real binary, on a fresh redb data directory per
//! test. Allocations are made through the library (`ipam_store::open` + `Ipam`) on the
//! same directory, as the CNI plugin would make them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use ipam_core::{Ipam, ObjectName, Owner, PodRef, Request, Slot};
use ipam_store::{self as store, StoreChoice};
use serde_json::{json, Value};

/// The seed document's manifests, kept verbatim in `examples/seed/`, and the widened
/// reservation of its step 4 (`examples/reservedip-widened.yaml`).
fn seed(file: &str) -> PathBuf {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    if file == "reservedip-widened.yaml" {
        examples.join(file)
    } else {
        examples.join("seed").join(file)
    }
}

/// What one run of `ipamctl` did.
#[derive(Debug)]
struct Run {
    status: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Asserts success and returns stdout.
    fn ok(self) -> String {
        assert_eq!(self.status, 0, "expected success: {self:?}");
        self.stdout
    }

    /// Asserts failure with exit 1, nothing on stdout and one line on stderr, and returns it
    /// without `error: ` and the newline.
    fn failed(self) -> String {
        assert_eq!(self.status, 1, "expected exit 1: {self:?}");
        assert_eq!(self.stdout, "", "{self:?}");
        assert_eq!(
            self.stderr.lines().count(),
            1,
            "one line expected: {self:?}"
        );
        self.stderr
            .trim_end()
            .strip_prefix("error: ")
            .unwrap_or_else(|| panic!("no error: prefix: {self:?}"))
            .to_owned()
    }
}

/// A data directory and the binary pointed at it.
struct Ctl {
    dir: tempfile::TempDir,
}

impl Ctl {
    fn new() -> Ctl {
        Ctl {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A store with the seed document's ReservedIP and IPPool applied.
    fn with_seed() -> Ctl {
        let ctl = Ctl::new();
        ctl.run(&[
            "apply",
            "-f",
            s(&seed("reservedip.yaml")),
            "-f",
            s(&seed("ippool.yaml")),
        ])
        .ok();
        ctl
    }

    fn run(&self, args: &[&str]) -> Run {
        self.run_with_stdin(args, "")
    }

    fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Run {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ipamctl"))
            .arg("--data-dir")
            .arg(self.dir.path())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        Run {
            status: out.status.code().expect("exited"),
            stdout: String::from_utf8(out.stdout).unwrap(),
            stderr: String::from_utf8(out.stderr).unwrap(),
        }
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.run(&all).ok()).unwrap()
    }

    /// Allocates from `pool` for container `id` through the library, as the CNI plugin
    /// does, and returns the address. The store is closed again before returning, so that
    /// the binary can open it.
    fn allocate(&self, pool: &str, id: &str, pod: Option<PodRef>) -> Result<String, String> {
        let store = store::open(&StoreChoice::Redb, self.dir.path(), Duration::from_secs(10))
            .map(|o| o.store)
            .map_err(|e| e.to_string())?;
        let ipam = Ipam::new(store);
        let mut request = Request::new(Owner::new(id, "eth0").unwrap(), "macvlan-net")
            .slot(Slot::any_of([ObjectName::new(pool).unwrap()]));
        if let Some(pod) = pod {
            request = request.pod(pod);
        }
        let got = pollster::block_on(ipam.allocate(&request)).map_err(|e| e.to_string())?;
        Ok(got[0].allocation.address.to_string())
    }
}

/// The integer after `"field": ` in JSON text.
fn raw_count(text: &str, field: &str) -> u128 {
    let key = format!("\"{field}\": ");
    let at = text
        .find(&key)
        .unwrap_or_else(|| panic!("no {field} in {text}"))
        + key.len();
    // Counts above 2^53 are strings.
    let value = text[at..].strip_prefix('"').unwrap_or(&text[at..]);
    let digits: String = value.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn the_seed_manifests_apply_verbatim_and_count_as_the_seed_says() {
    let ctl = Ctl::new();
    assert_eq!(
        ctl.run(&["apply", "-f", s(&seed("reservedip.yaml"))]).ok(),
        "reservedip/test-reservedip created\n"
    );
    assert_eq!(
        ctl.run(&["apply", "-f", s(&seed("ippool.yaml"))]).ok(),
        "ippool/test-ippool created\n"
    );
    // "three addresses, of which only one is available because two are reserved"
    assert_eq!(
        ctl.run(&["get", "ippools"]).ok(),
        "NAME          VERSION   SUBNET        TOTAL   RESERVED   ALLOCATED   AVAILABLE\n\
         test-ippool   4         10.6.0.0/16   3       2          0           1\n"
    );
    assert_eq!(
        ctl.run(&["get", "reservedips"]).ok(),
        "NAME              VERSION   COUNT\n\
         test-reservedip   4         2\n"
    );
    // One Pod gets .133; the next finds the pool used up.
    assert_eq!(
        ctl.allocate("test-ippool", "pod-a", None).unwrap(),
        "10.6.168.133"
    );
    assert_eq!(
        ctl.allocate("test-ippool", "pod-b", None).unwrap_err(),
        r#"all IP addresses used up: pool "test-ippool" (total 3, reserved 2, allocated 1, available 0)"#
    );
}

#[test]
fn apply_says_created_configured_unchanged() {
    let ctl = Ctl::new();
    let steps: &[(&str, &str)] = &[
        ("reservedip.yaml", "reservedip/test-reservedip created\n"),
        ("reservedip.yaml", "reservedip/test-reservedip unchanged\n"),
        (
            "reservedip-widened.yaml",
            "reservedip/test-reservedip configured\n",
        ),
        (
            "reservedip-widened.yaml",
            "reservedip/test-reservedip unchanged\n",
        ),
        ("ippool.yaml", "ippool/test-ippool created\n"),
        ("ippool.yaml", "ippool/test-ippool unchanged\n"),
    ];
    for (file, expect) in steps {
        assert_eq!(
            &ctl.run(&["apply", "-f", s(&seed(file))]).ok(),
            expect,
            "{file}"
        );
    }
    let changed = "apiVersion: ipam.rs/v1alpha1\nkind: IPPool\nmetadata:\n  name: test-ippool\n\
                   spec:\n  subnet: 10.6.0.0/16\n  ips: [10.6.168.131-10.6.168.140]\n  gateway: 10.6.0.1\n";
    assert_eq!(
        ctl.run_with_stdin(&["apply", "-f", "-"], changed).ok(),
        "ippool/test-ippool configured\n"
    );
    let status = &ctl.json(&["get", "ippool", "test-ippool"])["status"];
    assert_eq!(status["totalIPCount"], 10);
    assert_eq!(status["reservedIPCount"], 3);
    assert_eq!(status["availableIPCount"], 7);
}

/// Every input here has valid objects besides one invalid document: the whole input is
/// refused, the message names the document, the field and the value, and nothing of it is
/// applied (including the valid objects before the bad one).
#[test]
fn invalid_input_is_refused_whole_and_nothing_is_applied() {
    let ctl = Ctl::new();
    ctl.run(&["apply", "-f", s(&seed("ippool.yaml"))]).ok();
    let good_reserved = "apiVersion: ipam.rs/v1alpha1\nkind: ReservedIP\nmetadata: {name: new-r}\nspec: {ips: [10.6.168.131]}\n";
    let change_pool = "apiVersion: ipam.rs/v1alpha1\nkind: IPPool\nmetadata: {name: test-ippool}\nspec: {subnet: 10.6.0.0/16, ips: [10.6.0.0/24]}\n";
    let cases: &[(&str, &str)] = &[
        (
            "apiVersion: ipam.rs/v1alpha1\nkind: IPPool\nmetadata: {name: p2}\nspec: {subnet: 10.6.0.0/16, ips: [10.6.0.1, 010.6.0.2]}\n",
            r#"<stdin>: document 3 (IPPool "p2"): spec.ips[1]: "010.6.0.2": IPv4 octets must not have leading zeros; nothing was applied"#,
        ),
        (
            "apiVersion: ipam.rs/v1alpha1\nkind: IPPool\nmetadata: {name: p2}\nspec: {subnet: 10.6.0.5/24, ips: [10.6.0.9]}\n",
            r#"<stdin>: document 3 (IPPool "p2"): spec.subnet: "10.6.0.5/24": host bits are set; the network is 10.6.0.0/24; nothing was applied"#,
        ),
        (
            "apiVersion: ipam.rs/v1alpha1\nkind: IPPool\nmetadata: {name: p2}\nspec: {subnet: 10.6.0.0/16, ips: [10.7.0.1]}\n",
            r#"<stdin>: document 3 (IPPool "p2"): spec.ips[0]: "10.7.0.1": is outside the subnet 10.6.0.0/16; nothing was applied"#,
        ),
        (
            "apiVersion: ipam.rs/v1alpha1\nkind: ReservedIP\nmetadata: {name: r2}\nspec: {ips: [10.6.0.9-10.6.0.1]}\n",
            r#"<stdin>: document 3 (ReservedIP "r2"): spec.ips[0]: "10.6.0.9-10.6.0.1": range start is after its end; nothing was applied"#,
        ),
        (
            "apiVersion: ipam.rs/v1alpha1\nkind: IPPool\nmetadata: {name: p2}\nspec: {subnet: 10.6.0.0/16, ips: [10.6.0.1], gatway: 10.6.0.254}\n",
            r#"<stdin>: document 3 (IPPool "p2"): spec.gatway: "10.6.0.254": unknown field; the spec of IPPool has subnet, ips, excludeIPs, gateway, routes, ipVersion, default, keepStatefulSetAddresses; nothing was applied"#,
        ),
        (
            "apiVersion: spiderpool.spidernet.io/v2beta1\nkind: SpiderIPPool\nmetadata: {name: p2}\nspec: {subnet: 10.6.0.0/16, ips: [10.6.0.1], disable: true}\n",
            r#"<stdin>: document 3 (SpiderIPPool "p2"): spec.disable: "true": not implemented by ipam-rs: disabled pools are not supported: ipam-cni would hand out its addresses; delete the pool instead, or reserve its addresses with a ReservedIP; nothing was applied"#,
        ),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
            r#"<stdin>: document 3: kind: "ConfigMap": unknown kind; ipam-rs knows IPPool and ReservedIP (ipam.rs/v1alpha1), SpiderIPPool and SpiderReservedIP (spiderpool.spidernet.io/v2beta1); nothing was applied"#,
        ),
        (
            "apiVersion: ipam.rs/v1alpha1\nkind: ReservedIP\nmetadata: {name: new-r}\nspec: {ips: [10.6.168.132]}\n",
            r#"<stdin>: document 3 (reservedip/new-r): defined again; it was first defined at <stdin>: document 1; nothing was applied"#,
        ),
    ];
    let before = (
        ctl.json(&["get", "ippools"]),
        ctl.json(&["get", "reservedips"]),
    );
    for (bad, expect) in cases {
        let input = format!("{good_reserved}---\n{change_pool}---\n{bad}");
        let got = ctl.run_with_stdin(&["apply", "-f", "-"], &input).failed();
        assert_eq!(&got, expect);
        let after = (
            ctl.json(&["get", "ippools"]),
            ctl.json(&["get", "reservedips"]),
        );
        assert_eq!(after, before, "something was applied for {bad}");
    }
    // The same input without the bad document applies, so the refusals above were caused
    // by the bad document alone.
    assert_eq!(
        ctl.run_with_stdin(
            &["apply", "-f", "-"],
            &format!("{good_reserved}---\n{change_pool}")
        )
        .ok(),
        "reservedip/new-r created\nippool/test-ippool configured\n"
    );
}

#[test]
fn a_file_that_is_not_yaml_is_refused_naming_it() {
    let ctl = Ctl::new();
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "apiVersion: [\n").unwrap();
    let got = ctl.run(&["apply", "-f", s(&bad)]).failed();
    assert!(
        got.starts_with(&format!("{}: document 1: not valid YAML: ", bad.display())),
        "{got}"
    );
    let missing = dir.path().join("missing.yaml");
    let got = ctl.run(&["apply", "-f", s(&missing)]).failed();
    assert!(
        got.starts_with(&format!("cannot read {}: ", missing.display())),
        "{got}"
    );
    assert_eq!(
        ctl.run_with_stdin(&["apply", "-f", "-"], "---\n# nothing\n")
            .failed(),
        "no objects passed to apply; nothing was applied"
    );
}

/// A key given twice in one mapping is refused as kubectl refuses it, naming the file, the
/// document and the key, instead of silently keeping the last value; nothing is applied.
#[test]
fn a_key_given_twice_is_refused_and_nothing_is_applied() {
    let ctl = Ctl::with_seed();
    let before = (
        ctl.json(&["get", "ippools"]),
        ctl.json(&["get", "reservedips"]),
    );
    let dir = tempfile::tempdir().unwrap();
    // A valid object first, then the seed's pool with its range listed a second time.
    let yaml = dir.path().join("pools.yaml");
    std::fs::write(
        &yaml,
        "apiVersion: ipam.rs/v1alpha1\nkind: ReservedIP\nmetadata: {name: r2}\nspec: {ips: [10.6.0.9]}\n\
         ---\napiVersion: ipam.rs/v1alpha1\nkind: IPPool\nmetadata:\n  name: test-ippool\nspec:\n  \
         subnet: 10.6.0.0/16\n  ips:\n  - 10.6.168.131-10.6.168.133\n  ips:\n  - 10.6.0.0/24\n",
    )
    .unwrap();
    assert_eq!(
        ctl.run(&["apply", "-f", s(&yaml)]).failed(),
        format!(
            r#"{}: document 2: spec.ips: mapping key "ips" is given twice (the second value at line 15, column 3); remove one of them; nothing was applied"#,
            yaml.display()
        )
    );
    let json = dir.path().join("pool.json");
    std::fs::write(
        &json,
        r#"{"apiVersion": "ipam.rs/v1alpha1", "kind": "IPPool", "metadata": {"name": "test-ippool"},
"spec": {"subnet": "10.6.0.0/16", "ips": ["10.6.168.131-10.6.168.133"], "ips": ["10.6.0.0/24"]}}"#,
    )
    .unwrap();
    assert_eq!(
        ctl.run(&["apply", "-f", s(&json)]).failed(),
        format!(
            r#"{}: document 1: spec.ips: mapping key "ips" is given twice (the second value at line 2, column 80); remove one of them; nothing was applied"#,
            json.display()
        )
    );
    let stdin = "apiVersion: ipam.rs/v1alpha1\nkind: ReservedIP\nkind: IPPool\nmetadata: {name: r3}\nspec: {ips: [10.6.0.7]}\n";
    assert_eq!(
        ctl.run_with_stdin(&["apply", "-f", "-"], stdin).failed(),
        r#"<stdin>: document 1: kind: mapping key "kind" is given twice (the second value at line 3, column 7); remove one of them; nothing was applied"#
    );
    let after = (
        ctl.json(&["get", "ippools"]),
        ctl.json(&["get", "reservedips"]),
    );
    assert_eq!(after, before, "something was applied");
}

#[test]
fn directories_and_multi_document_files_apply_in_order() {
    let ctl = Ctl::new();
    let dir = tempfile::tempdir().unwrap();
    // Read in name order, other files skipped; reservations are applied before pools.
    std::fs::copy(seed("ippool.yaml"), dir.path().join("10-ippool.yaml")).unwrap();
    std::fs::copy(
        seed("reservedip.yaml"),
        dir.path().join("20-reservedip.yml"),
    )
    .unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a manifest").unwrap();
    std::fs::write(
        dir.path().join("30-v6.json"),
        r#"{"apiVersion":"ipam.rs/v1alpha1","kind":"IPPool","metadata":{"name":"v6"},"spec":{"subnet":"fd00::/64","ips":["fd00::/64"]}}"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("40-multi.yaml"),
        "apiVersion: ipam.rs/v1alpha1\nkind: ReservedIP\nmetadata: {name: v6-low}\nspec: {ips: ['fd00::-fd00::ff']}\n---\n\
         apiVersion: ipam.rs/v1alpha1\nkind: ReservedIP\nmetadata: {name: empty}\nspec: {ips: []}\n",
    )
    .unwrap();
    assert_eq!(
        ctl.run(&["apply", "-f", s(dir.path())]).ok(),
        "reservedip/test-reservedip created\nreservedip/v6-low created\nreservedip/empty created\n\
         ippool/test-ippool created\nippool/v6 created\n"
    );
    assert_eq!(
        ctl.run(&["get", "ippools"]).ok(),
        "NAME          VERSION   SUBNET        TOTAL                  RESERVED   ALLOCATED   AVAILABLE\n\
         test-ippool   4         10.6.0.0/16   3                      2          0           1\n\
         v6            6         fd00::/64     18446744073709551616   256        0           18446744073709551360\n"
    );
    assert_eq!(
        ctl.run(&["get", "reservedips", "-o", "wide"]).ok(),
        "NAME              VERSION   COUNT   IPS\n\
         empty             <none>    0       <none>\n\
         test-reservedip   4         2       10.6.168.131-10.6.168.132\n\
         v6-low            6         256     fd00::-fd00::ff\n"
    );
    // Several -f flags make one input, validated together.
    assert_eq!(
        ctl.run(&[
            "apply",
            "-f",
            s(&seed("ippool.yaml")),
            "-f",
            s(&seed("reservedip-widened.yaml"))
        ])
        .ok(),
        "reservedip/test-reservedip configured\nippool/test-ippool unchanged\n"
    );
}

/// Counts for pools of several shapes, with reservations and allocations, per the
/// contract: total = ips − excludeIPs − gateway − (IPv4 ≤ /30) network and broadcast;
/// reserved = those of total under a ReservedIP; available = total − reserved −
/// allocated-and-not-reserved.
#[test]
fn counts_follow_the_contract() {
    let ctl = Ctl::new();
    let reserved = "apiVersion: ipam.rs/v1alpha1\nkind: ReservedIP\nmetadata: {name: r4}\nspec: {ips: [10.1.0.0-10.1.0.9, 10.2.0.1-10.2.0.2]}\n---\n\
                    apiVersion: ipam.rs/v1alpha1\nkind: ReservedIP\nmetadata: {name: r6}\nspec: {ips: ['fd00::/120']}\n";
    ctl.run_with_stdin(&["apply", "-f", "-"], reserved).ok();
    // (name, spec, allocations to make, expected TOTAL RESERVED ALLOCATED AVAILABLE)
    let cases: &[(&str, &str, usize, [u128; 4])] = &[
        // /24 whole: 256 − network − broadcast = 254; .0-.9 reserved but .0 is not counted.
        ("a24", "{subnet: 10.1.0.0/24, ips: [10.1.0.0/24]}", 2, [254, 9, 2, 243]),
        // gateway and excludeIPs leave too; overlapping entries count once.
        (
            "gw",
            "{subnet: 10.2.0.0/24, ips: [10.2.0.1-10.2.0.20, 10.2.0.10-10.2.0.30], gateway: 10.2.0.1, excludeIPs: [10.2.0.30]}",
            1,
            [28, 1, 1, 26],
        ),
        // /31 keeps both addresses.
        ("p31", "{subnet: 10.3.0.0/31, ips: [10.3.0.0/31]}", 2, [2, 0, 2, 0]),
        // IPv6 has no broadcast; a /64 is counted exactly.
        ("v6", "{subnet: 'fd00::/64', ips: ['fd00::/64']}", 1, [1 << 64, 256, 1, (1 << 64) - 257]),
    ];
    for (name, spec, allocs, [total, reserved, allocated, available]) in cases {
        let manifest = format!("apiVersion: ipam.rs/v1alpha1\nkind: IPPool\nmetadata: {{name: {name}}}\nspec: {spec}\n");
        assert_eq!(
            ctl.run_with_stdin(&["apply", "-f", "-"], &manifest).ok(),
            format!("ippool/{name} created\n")
        );
        for i in 0..*allocs {
            ctl.allocate(name, &format!("{name}-c{i}"), None).unwrap();
        }
        // Read from the text: counts beyond 2^53 do not survive a trip through f64.
        let text = ctl.run(&["get", "ippool", name, "-o", "json"]).ok();
        let n = |field: &str| -> u128 { raw_count(&text, field) };
        let status = &text;
        assert_eq!(
            [
                n("totalIPCount"),
                n("reservedIPCount"),
                n("allocatedIPCount"),
                n("availableIPCount")
            ],
            [*total, *reserved, *allocated, *available],
            "{name}: {status}"
        );
        // The table says the same.
        let table = ctl.run(&["get", "ippool", name]).ok();
        let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(
            row[3..],
            [
                total.to_string(),
                reserved.to_string(),
                allocated.to_string(),
                available.to_string()
            ],
            "{table}"
        );
    }
}

#[test]
fn get_prints_json_and_yaml_objects_and_lists() {
    let ctl = Ctl::with_seed();
    let pool = json!({
        "apiVersion": "ipam.rs/v1alpha1",
        "kind": "IPPool",
        "metadata": {"name": "test-ippool"},
        "spec": {"subnet": "10.6.0.0/16", "ips": ["10.6.168.131-10.6.168.133"]},
        "status": {"totalIPCount": 3, "reservedIPCount": 2, "allocatedIPCount": 0, "availableIPCount": 1}
    });
    let reserved = json!({
        "apiVersion": "ipam.rs/v1alpha1",
        "kind": "ReservedIP",
        "metadata": {"name": "test-reservedip"},
        "spec": {"ips": ["10.6.168.131-10.6.168.132"]},
        "status": {"reservedIPCount": 2}
    });
    assert_eq!(ctl.json(&["get", "ippool", "test-ippool"]), pool);
    assert_eq!(ctl.json(&["get", "ippool/test-ippool"]), pool);
    assert_eq!(
        ctl.json(&["get", "ippools"]),
        json!({"apiVersion": "v1", "kind": "List", "items": [pool]})
    );
    assert_eq!(
        ctl.json(&["get", "reservedip", "test-reservedip"]),
        reserved
    );
    assert_eq!(
        ctl.json(&["get", "spiderreservedips"]),
        json!({"apiVersion": "v1", "kind": "List", "items": [reserved]})
    );
    let yaml = ctl.run(&["get", "ippools", "-o", "yaml"]).ok();
    let from_yaml: Value = serde_yaml_ng::from_str(&yaml).unwrap();
    assert_eq!(
        from_yaml,
        json!({"apiVersion": "v1", "kind": "List", "items": [pool]})
    );
    // What get prints applies back as it is.
    assert_eq!(
        ctl.run_with_stdin(&["apply", "-f", "-"], &yaml).ok(),
        "ippool/test-ippool unchanged\n"
    );
    // Empty lists stay lists; an empty table says so on stderr.
    let empty = Ctl::new();
    assert_eq!(
        empty.json(&["get", "ippools"]),
        json!({"apiVersion": "v1", "kind": "List", "items": []})
    );
    let run = empty.run(&["get", "reservedips"]);
    assert_eq!(
        (run.status, run.stdout.as_str(), run.stderr.as_str()),
        (0, "", "No resources found\n")
    );
}

#[test]
fn allocations_print_flat_with_pod_fields_where_known() {
    let ctl = Ctl::new();
    ctl.run(&["apply", "-f", s(&seed("ippool.yaml"))]).ok();
    let pod = PodRef {
        namespace: Some("default".into()),
        name: "test-app-67dd9f645-dv8xz".into(),
        uid: Some("9f8e7d6c".into()),
        statefulset: None,
    };
    assert_eq!(
        ctl.allocate("test-ippool", "c1", Some(pod)).unwrap(),
        "10.6.168.131"
    );
    assert_eq!(
        ctl.allocate("test-ippool", "c2", None).unwrap(),
        "10.6.168.132"
    );
    let db0 = PodRef {
        namespace: Some("default".into()),
        name: "db-0".into(),
        uid: Some("5a5a".into()),
        statefulset: Some("db".into()),
    };
    assert_eq!(
        ctl.allocate("test-ippool", "c3", Some(db0)).unwrap(),
        "10.6.168.133"
    );
    let items = json!({"items": [
        {"address": "10.6.168.131", "pool": "test-ippool", "network": "macvlan-net",
         "containerID": "c1", "ifname": "eth0", "podNamespace": "default",
         "podName": "test-app-67dd9f645-dv8xz", "podUID": "9f8e7d6c", "heldFor": "pod"},
        {"address": "10.6.168.132", "pool": "test-ippool", "network": "macvlan-net",
         "containerID": "c2", "ifname": "eth0", "heldFor": "noPod"},
        {"address": "10.6.168.133", "pool": "test-ippool", "network": "macvlan-net",
         "containerID": "c3", "ifname": "eth0", "podNamespace": "default",
         "podName": "db-0", "podUID": "5a5a", "heldFor": "statefulSetPod", "statefulSet": "db"}
    ]});
    assert_eq!(ctl.json(&["get", "allocations"]), items);
    assert_eq!(
        ctl.json(&["get", "allocations", "--pool", "test-ippool"]),
        items
    );
    assert_eq!(
        ctl.json(&["get", "allocation", "10.6.168.132"]),
        json!({"items": [items["items"][1]]})
    );
    assert_eq!(
        ctl.run(&["get", "allocations", "-o", "wide"]).ok(),
        "ADDRESS        POOL          NETWORK       CONTAINER-ID   IFNAME   POD                                POD-UID    NODE     HELD-FOR\n\
         10.6.168.131   test-ippool   macvlan-net   c1             eth0     default/test-app-67dd9f645-dv8xz   9f8e7d6c   <none>   Pod\n\
         10.6.168.132   test-ippool   macvlan-net   c2             eth0     <none>                             <none>     <none>   no Pod\n\
         10.6.168.133   test-ippool   macvlan-net   c3             eth0     default/db-0                       5a5a       <none>   Pod of StatefulSet db\n"
    );
    assert_eq!(
        ctl.run(&["get", "allocation", "10.6.168.134"]).failed(),
        r#"allocation "10.6.168.134" not found"#
    );
    assert_eq!(
        ctl.run(&["get", "allocations", "--pool", "nope"]).failed(),
        r#"ippool "nope" not found"#
    );
}

#[test]
fn missing_objects_and_bad_commands_exit_1_with_one_line() {
    let ctl = Ctl::new();
    let cases: &[(&[&str], &str)] = &[
        (&["get", "ippool", "x"], r#"ippool "x" not found"#),
        (&["get", "ippools", "x"], r#"ippool "x" not found"#),
        (&["get", "reservedip", "x"], r#"reservedip "x" not found"#),
        (&["delete", "ippool", "x"], r#"ippool "x" not found"#),
        (&["delete", "reservedip/x"], r#"reservedip "x" not found"#),
        (
            &["get", "nodes"],
            r#"unknown resource type "nodes"; use ippools, reservedips or allocations"#,
        ),
        (
            &["explain", "10.6.168.0131"],
            r#"invalid address "10.6.168.0131": IPv4 octets must not have leading zeros (explain takes one address)"#,
        ),
        (
            &["delete", "allocation", "10.6.0.1"],
            "allocations are not deleted with ipamctl: their owners release them (CNI DEL or GC); delete the pool with --force to drop all of its allocations",
        ),
    ];
    for (args, expect) in cases {
        assert_eq!(&ctl.run(args).failed(), expect, "{args:?}");
    }
    // A Kubernetes store whose kubeconfig cannot be read: the file is named, whatever the
    // command.
    for args in [
        &["--kubeconfig", "/nonexistent/kubeconfig", "get", "ippools"][..],
        &[
            "--store",
            "kubernetes",
            "--kubeconfig",
            "/nonexistent/kubeconfig",
            "explain",
            "10.6.0.1",
        ],
        &[
            "apply",
            "-f",
            s(&seed("ippool.yaml")),
            "--kubeconfig",
            "/nonexistent/kubeconfig",
        ],
    ] {
        let got = ctl.run(args).failed();
        assert!(got.contains("/nonexistent/kubeconfig"), "{args:?}: {got}");
    }
    let got = ctl.run(&["get", "ippools", "-o", "xml"]).failed();
    assert!(got.contains("unknown output format \"xml\""), "{got}");
}

#[test]
fn delete_refuses_a_pool_in_use_unless_forced() {
    let ctl = Ctl::with_seed();
    ctl.allocate("test-ippool", "c1", None).unwrap();
    assert_eq!(
        ctl.run(&["delete", "ippool", "test-ippool"]).failed(),
        r#"ippool "test-ippool" has 1 allocation(s); release them (CNI DEL) first, or delete with --force to release them"#
    );
    assert_eq!(
        ctl.json(&["get", "ippool", "test-ippool"])["status"]["allocatedIPCount"],
        1
    );
    let run = ctl.run(&["delete", "ippool", "test-ippool", "--force"]);
    assert_eq!(
        (run.status, run.stdout.as_str(), run.stderr.as_str()),
        (
            0,
            "ippool/test-ippool deleted\n",
            "warning: released 1 allocation(s) of ippool/test-ippool: 10.6.168.133 (c1/eth0)\n"
        )
    );
    assert_eq!(
        ctl.run(&["get", "ippool", "test-ippool"]).failed(),
        r#"ippool "test-ippool" not found"#
    );
    assert_eq!(ctl.json(&["get", "allocations"]), json!({"items": []}));
    assert_eq!(
        ctl.run(&["delete", "reservedip", "test-reservedip"]).ok(),
        "reservedip/test-reservedip deleted\n"
    );
    assert_eq!(
        ctl.json(&["get", "reservedips"]),
        json!({"apiVersion": "v1", "kind": "List", "items": []})
    );
    // A pool without allocations needs no --force.
    ctl.run(&["apply", "-f", s(&seed("ippool.yaml"))]).ok();
    assert_eq!(
        ctl.run(&["delete", "sp", "test-ippool"]).ok(),
        "ippool/test-ippool deleted\n"
    );
}

#[test]
fn explain_gives_every_reason() {
    let ctl = Ctl::with_seed();
    let gw = "apiVersion: ipam.rs/v1alpha1\nkind: IPPool\nmetadata: {name: gw}\n\
              spec: {subnet: 10.6.0.0/16, ips: [10.6.0.1-10.6.0.9], gateway: 10.6.0.1, excludeIPs: [10.6.0.9]}\n";
    ctl.run_with_stdin(&["apply", "-f", "-"], gw).ok();
    ctl.allocate(
        "test-ippool",
        "c1",
        Some(PodRef {
            namespace: Some("default".into()),
            name: "web".into(),
            uid: None,
            statefulset: None,
        }),
    )
    .unwrap();
    let cases: &[(&str, &str)] = &[
        (
            "10.6.168.131",
            "10.6.168.131: not allocatable\n  ippool/gw: in the subnet but not in spec.ips\n  \
             ippool/test-ippool: listed\n  reserved by reservedip/test-reservedip\n",
        ),
        (
            "10.6.168.133",
            "10.6.168.133: not allocatable\n  ippool/gw: in the subnet but not in spec.ips\n  \
             ippool/test-ippool: listed\n  held by c1/eth0 (network \"macvlan-net\", pool \"test-ippool\", pod default/web)\n",
        ),
        (
            "10.6.0.1",
            "10.6.0.1: not allocatable\n  ippool/gw: listed, but kept out by spec.gateway\n  \
             ippool/test-ippool: in the subnet but not in spec.ips\n",
        ),
        (
            "10.6.0.9",
            "10.6.0.9: not allocatable\n  ippool/gw: listed, but kept out by spec.excludeIPs\n  \
             ippool/test-ippool: in the subnet but not in spec.ips\n",
        ),
        (
            "10.6.0.5",
            "10.6.0.5: allocatable\n  ippool/gw: listed\n  ippool/test-ippool: in the subnet but not in spec.ips\n",
        ),
        ("192.0.2.1", "192.0.2.1: not allocatable\n  no pool's subnet contains it\n"),
    ];
    for (address, expect) in cases {
        assert_eq!(&ctl.run(&["explain", address]).ok(), expect, "{address}");
    }
}

/// Spiderpool's fields that ipam-rs does not implement: an empty value (as Spiderpool's own
/// examples write `vlan: 0`) is taken, a value that says something is refused, naming the
/// field, as the cluster's SpiderIPPool schema refuses it for kubectl.
#[test]
fn spiderpool_only_fields_are_taken_empty_and_refused_used() {
    let ctl = Ctl::new();
    let manifest = |affinity: &str| {
        format!(
            "apiVersion: spiderpool.spidernet.io/v2beta1\nkind: SpiderIPPool\nmetadata:\n  name: master-172\n\
             spec:\n  ipVersion: 4\n  subnet: 172.31.192.0/20\n  ips:\n  - 172.31.199.180-172.31.199.189\n\
             \x20 excludeIPs:\n  - 172.31.199.186-172.31.199.188\n  gateway: 172.31.207.253\n  vlan: 0\n\
             \x20 podAffinity: {affinity}\n  default: true\n  disable: false\n"
        )
    };
    let run = ctl.run_with_stdin(&["apply", "-f", "-"], &manifest("{matchLabels: {app: x}}"));
    assert_eq!(
        (run.status, run.stdout.as_str(), run.stderr.as_str()),
        (
            1,
            "",
            "error: <stdin>: document 1 (SpiderIPPool \"master-172\"): spec.podAffinity: \"{\\\"matchLabels\\\":{\\\"app\\\":\\\"x\\\"}}\": not implemented by ipam-rs: pool selection filters are not implemented: the pool serves every network that names it; nothing was applied\n"
        )
    );
    let run = ctl.run_with_stdin(&["apply", "-f", "-"], &manifest("{}"));
    assert_eq!(
        (run.status, run.stdout.as_str(), run.stderr.as_str()),
        (0, "ippool/master-172 created\n", "")
    );
    assert_eq!(
        ctl.json(&["get", "ippool", "master-172"])["spec"],
        json!({"subnet": "172.31.192.0/20", "ips": ["172.31.199.180-172.31.199.189"],
               "excludeIPs": ["172.31.199.186-172.31.199.188"], "gateway": "172.31.207.253",
               "ipVersion": 4, "default": true})
    );
}

/// The same commands on each embedded backend give the same answers.
#[test]
fn every_embedded_store_answers_alike() {
    for backend in ["redb", "sled"] {
        let ctl = Ctl::new();
        let run = |args: &[&str]| {
            let mut all = vec!["--store", backend];
            all.extend_from_slice(args);
            ctl.run(&all)
        };
        assert_eq!(
            run(&[
                "apply",
                "-f",
                s(&seed("reservedip.yaml")),
                "-f",
                s(&seed("ippool.yaml"))
            ])
            .ok(),
            "reservedip/test-reservedip created\nippool/test-ippool created\n",
            "{backend}"
        );
        assert_eq!(
            run(&["get", "ippools"]).ok(),
            "NAME          VERSION   SUBNET        TOTAL   RESERVED   ALLOCATED   AVAILABLE\n\
             test-ippool   4         10.6.0.0/16   3       2          0           1\n",
            "{backend}"
        );
        assert_eq!(
            run(&["delete", "reservedip", "test-reservedip"]).ok(),
            "reservedip/test-reservedip deleted\n",
            "{backend}"
        );
        assert!(
            run(&["get", "ippools"])
                .ok()
                .ends_with("3       0          0           3\n"),
            "{backend}"
        );
    }
}

/// Reading, deleting and explaining never create a store; a missing data directory is
/// reported rather than shown as empty. apply creates it.
#[test]
fn only_apply_creates_a_data_directory() {
    let parent = tempfile::tempdir().unwrap();
    let missing = parent.path().join("nope");
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_ipamctl"))
            .arg("--data-dir")
            .arg(&missing)
            .args(args)
            .output()
            .unwrap();
        Run {
            status: out.status.code().unwrap(),
            stdout: String::from_utf8(out.stdout).unwrap(),
            stderr: String::from_utf8(out.stderr).unwrap(),
        }
    };
    let expect = format!(
        "no store in {}: the directory does not exist (check --data-dir; ipamctl apply creates it)",
        missing.display()
    );
    for args in [
        &["get", "ippools"][..],
        &["get", "allocations", "-o", "json"],
        &["delete", "reservedip", "x"],
        &["explain", "10.6.0.1"],
    ] {
        assert_eq!(run(args).failed(), expect, "{args:?}");
        assert!(!missing.exists(), "{args:?} created the data directory");
    }
    // A mistake in the command itself is reported as such, before the store is looked for.
    assert!(run(&["explain", "10.6.0.0/16"])
        .failed()
        .starts_with("invalid address"));
    assert!(run(&["delete", "allocation", "10.6.0.1"])
        .failed()
        .starts_with("allocations are not deleted"));
    assert!(!missing.exists());
    // A refused apply creates nothing either; a valid one creates the store.
    let bad = parent.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: ipam.rs/v1alpha1\nkind: ReservedIP\nmetadata: {name: r}\nspec: {ips: [x]}\n",
    )
    .unwrap();
    run(&["apply", "-f", s(&bad)]).failed();
    assert!(!missing.exists());
    assert_eq!(
        run(&["apply", "-f", s(&seed("reservedip.yaml"))]).ok(),
        "reservedip/test-reservedip created\n"
    );
    assert!(missing.is_dir());
    assert_eq!(run(&["get", "ippools"]).stderr, "No resources found\n");
}

/// What `get -o yaml|json` prints applies back unchanged, for an IPv6 /64 pool too, whose
/// counts (2^64) no JSON reader holds as a number: they print as strings.
#[test]
fn a_v6_64_pool_printed_by_get_applies_back_unchanged() {
    let ctl = Ctl::new();
    let v6 = "apiVersion: ipam.rs/v1alpha1\nkind: IPPool\nmetadata: {name: v6}\nspec: {subnet: 'fd00::/64', ips: ['fd00::/64']}\n";
    assert_eq!(
        ctl.run_with_stdin(&["apply", "-f", "-"], v6).ok(),
        "ippool/v6 created\n"
    );
    ctl.allocate("v6", "c1", None).unwrap();
    for args in [
        &["get", "ippool", "v6", "-o", "yaml"][..],
        &["get", "ippool", "v6", "-o", "json"],
        &["get", "ippools", "-o", "yaml"],
        &["get", "ippools", "-o", "json"],
    ] {
        let printed = ctl.run(args).ok();
        assert_eq!(
            ctl.run_with_stdin(&["apply", "-f", "-"], &printed).ok(),
            "ippool/v6 unchanged\n",
            "{args:?}: {printed}"
        );
    }
    let json: serde_json::Value =
        serde_json::from_str(&ctl.run(&["get", "ippool", "v6", "-o", "json"]).ok()).unwrap();
    assert_eq!(
        json["status"],
        json!({
            "totalIPCount": "18446744073709551616",
            "reservedIPCount": 0,
            "allocatedIPCount": 1,
            "availableIPCount": "18446744073709551615"
        })
    );
}
