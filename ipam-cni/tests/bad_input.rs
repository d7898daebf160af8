//! A catalogue of bad input. Each entry gets its exact code, a message that names the field
//! or the cause, the four fields of a CNI error, a non-zero exit, and leaves the store as it
//! was (a dump of every record with its version is compared before and after).

mod common;

use std::path::Path;

use common::{call, dump, ipam_at, netconf, Call};
use ipam_core::{IpPool, IpPoolSpec, ReservedIp, ReservedIpSpec};
use serde_json::{json, Value};

/// A store with one pool from `ippools`, one inline pool, a ReservedIP and one allocation
/// held by `holder`.
fn setup(dir: &Path) -> Value {
    {
        let ipam = ipam_at(dir);
        pollster::block_on(
            ipam.apply_pool(
                IpPool::new(
                    "test-ippool",
                    IpPoolSpec {
                        subnet: "10.6.0.0/16".into(),
                        ips: vec!["10.6.168.131-10.6.168.133".into()],
                        ..Default::default()
                    },
                )
                .unwrap(),
            ),
        )
        .unwrap();
        pollster::block_on(
            ipam.apply_reserved_ip(
                ReservedIp::new(
                    "test-reservedip",
                    ReservedIpSpec {
                        ips: vec!["10.6.168.131-10.6.168.132".into()],
                        ip_version: None,
                    },
                )
                .unwrap(),
            ),
        )
        .unwrap();
    }
    let conf = good(dir);
    let r = call("ADD", "holder", &conf).run().ok();
    assert_eq!(r.addresses(), ["198.51.100.10/24", "10.6.168.133/16"]);
    conf
}

fn good(dir: &Path) -> Value {
    netconf(
        "1.1.0",
        "net1",
        dir,
        json!({"ranges": [[{"subnet": "198.51.100.0/24", "rangeStart": "198.51.100.10",
                            "rangeEnd": "198.51.100.20"}]],
               "ippools": {"ipv4": ["test-ippool"]}}),
    )
}

/// `conf` with `path` (e.g. `/ipam/ranges`) set to `value`.
fn with(conf: &Value, path: &str, value: Value) -> Value {
    let mut c = conf.clone();
    let (parent, key) = path.rsplit_once('/').unwrap();
    let parent = c.pointer_mut(parent).unwrap_or_else(|| panic!("{path}"));
    parent[key] = value;
    c
}

/// Runs `call`, checks code, message and error shape, and that the store is unchanged.
fn expect(dir: &Path, name: &str, call: Call<'_>, code: u64, msg: &str) {
    let before = dump(dir);
    let r = call.run();
    assert_ne!(r.status, Some(0), "{name}: succeeded: {r:#?}");
    for key in ["cniVersion", "code", "msg", "details"] {
        assert!(
            r.json.get(key).is_some(),
            "{name}: no {key:?} in {}",
            r.stdout
        );
    }
    assert_eq!(r.code(), Some(code), "{name}: {}", r.stdout);
    r.assert_cause_once();
    assert!(
        r.msg().contains(msg),
        "{name}: message {:?} does not contain {msg:?}",
        r.msg()
    );
    assert_eq!(dump(dir), before, "{name}: the store changed");
}

#[test]
fn malformed_stdin_and_environment() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let conf = setup(d);
    let huge = format!(
        r#"{{"cniVersion":"1.1.0","name":"net1","pad":"{}"}}"#,
        "x".repeat(2 << 20)
    );
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let table: Vec<(&str, Call<'_>, u64, &str)> = vec![
        (
            "truncated JSON",
            call("ADD", "c", &conf).stdin(br#"{"cniVersion": "1.1.0", "name""#.to_vec()),
            6,
            "stdin is not valid JSON",
        ),
        (
            "huge JSON",
            call("ADD", "c", &conf).stdin(huge.into_bytes()),
            6,
            "stdin is larger than 1048576 bytes",
        ),
        (
            "deeply nested JSON",
            call("ADD", "c", &conf).stdin(deep.into_bytes()),
            6,
            "recursion limit exceeded",
        ),
        (
            "not an object",
            call("ADD", "c", &conf).stdin(b"[1, 2]".to_vec()),
            6,
            "expected the network configuration as a JSON object",
        ),
        (
            "empty stdin",
            call("ADD", "c", &conf).stdin(Vec::new()),
            6,
            "stdin is empty",
        ),
        (
            "binary garbage",
            call("ADD", "c", &conf).stdin(vec![0xff, 0xfe, 0x00, 0x01]),
            6,
            "stdin is not valid JSON",
        ),
        (
            "unsupported version",
            call("ADD", "c", &with(&conf, "/cniVersion", json!("0.2.0"))),
            1,
            r#"cniVersion: "0.2.0": not supported; this plugin supports 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0"#,
        ),
        (
            "missing version",
            call("ADD", "c", &with(&conf, "/cniVersion", Value::Null)),
            1,
            "cniVersion is missing",
        ),
        (
            "CHECK before 0.4.0",
            call(
                "CHECK",
                "holder",
                &with(&conf, "/cniVersion", json!("0.3.1")),
            ),
            1,
            "CHECK needs cniVersion 0.4.0 or later; the configuration says 0.3.1",
        ),
        (
            "GC before 1.1.0",
            call("GC", "x", &with(&conf, "/cniVersion", json!("1.0.0"))),
            1,
            "GC needs cniVersion 1.1.0 or later",
        ),
        (
            "STATUS before 1.1.0",
            call("STATUS", "x", &with(&conf, "/cniVersion", json!("0.4.0"))),
            1,
            "STATUS needs cniVersion 1.1.0 or later",
        ),
        (
            "no CNI_COMMAND",
            call("ADD", "c", &conf).unset("CNI_COMMAND"),
            4,
            "CNI_COMMAND is not set",
        ),
        (
            "unknown CNI_COMMAND",
            call("ATTACH", "c", &conf),
            4,
            r#"CNI_COMMAND: "ATTACH": unknown command"#,
        ),
        (
            "no CNI_CONTAINERID on ADD",
            call("ADD", "c", &conf).unset("CNI_CONTAINERID"),
            4,
            "CNI_CONTAINERID is not set; ADD needs it",
        ),
        (
            "no CNI_IFNAME on DEL",
            call("DEL", "holder", &conf).unset("CNI_IFNAME"),
            4,
            "CNI_IFNAME is not set; DEL needs it",
        ),
        (
            "no CNI_CONTAINERID on CHECK",
            call("CHECK", "c", &conf).var("CNI_CONTAINERID", ""),
            4,
            "CNI_CONTAINERID is not set; CHECK needs it",
        ),
        (
            "container ID with a slash",
            call("ADD", "../../etc/passwd", &conf),
            4,
            r#"CNI_CONTAINERID: "../../etc/passwd": must be 1-256 characters of letters, digits, '-', '.' or '_', and not '.' or '..'"#,
        ),
        (
            "container ID ..",
            call("DEL", "..", &conf),
            4,
            r#"CNI_CONTAINERID: "..": must be 1-256 characters of letters, digits, '-', '.' or '_', and not '.' or '..'"#,
        ),
        (
            "container ID with a space",
            call("ADD", "a b", &conf),
            4,
            r#"CNI_CONTAINERID: "a b""#,
        ),
        (
            "interface name too long",
            call("ADD", "c", &conf).var("CNI_IFNAME", "a-very-long-ifname"),
            4,
            r#"CNI_IFNAME: "a-very-long-ifname": must be 1-15 bytes"#,
        ),
        (
            "CNI_ARGS without =",
            call("ADD", "c", &conf).var("CNI_ARGS", "IgnoreUnknown=1;IP"),
            4,
            r#"CNI_ARGS: "IP": is not KEY=VALUE"#,
        ),
    ];
    for (name, call, code, msg) in table {
        expect(d, name, call, code, msg);
    }
}

#[test]
fn invalid_configuration_names_field_and_value() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let conf = setup(d);
    let range = |r: Value| with(&conf, "/ipam/ranges", r);
    let table: Vec<(&str, Value, u64, &str)> = vec![
        (
            "wrong type",
            range(json!({"subnet": "10.0.0.0/8"})),
            6,
            "ipam.ranges: invalid type: map, expected a sequence",
        ),
        (
            "wrong type deep inside",
            range(json!([[{"subnet": "198.51.100.0/24", "gateway": 1}]])),
            6,
            "ipam.ranges[0][0].gateway: invalid type: integer `1`, expected a string",
        ),
        (
            "bad address syntax",
            range(
                json!([[{"subnet": "198.51.100.0/24"}, {"subnet": "10.9.0.0/16", "rangeStart": "10.6.0.300"}]]),
            ),
            7,
            r#"ipam.ranges[0][1].rangeStart: "10.6.0.300": not an IPv4 or IPv6 address"#,
        ),
        (
            "leading zeros",
            range(json!([[{"subnet": "198.51.100.0/24", "rangeStart": "198.51.100.010"}]])),
            7,
            r#"ipam.ranges[0][0].rangeStart: "198.51.100.010": IPv4 octets must not have leading zeros"#,
        ),
        (
            "host bits",
            range(json!([[{"subnet": "198.51.100.7/24"}]])),
            7,
            r#"ipam.ranges[0][0].subnet: "198.51.100.7/24": host bits are set; the network is 198.51.100.0/24"#,
        ),
        (
            "start after end",
            range(
                json!([[{"subnet": "198.51.100.0/24", "rangeStart": "198.51.100.9", "rangeEnd": "198.51.100.8"}]]),
            ),
            7,
            r#"ipam.ranges[0][0].rangeEnd: "198.51.100.8": is before rangeStart 198.51.100.9"#,
        ),
        (
            "range outside its subnet",
            range(json!([[{"subnet": "198.51.100.0/24", "rangeEnd": "198.51.101.9"}]])),
            7,
            r#"ipam.ranges[0][0].rangeEnd: "198.51.101.9": is outside the subnet 198.51.100.0/24"#,
        ),
        (
            "mixed families in a set",
            range(json!([[{"subnet": "198.51.100.0/24"}, {"subnet": "2001:db8::/64"}]])),
            7,
            r#"ipam.ranges[0][1].subnet: "2001:db8::/64": is IPv6 while ipam.ranges[0][0] is IPv4; a range set holds one family"#,
        ),
        (
            "overlapping range sets",
            range(json!([[{"subnet": "198.51.100.0/24"}], [{"subnet": "198.51.100.0/25"}]])),
            7,
            r#"ipam.ranges[1][0]: "198.51.100.1-198.51.100.126": overlaps ipam.ranges[0][0] (198.51.100.1-198.51.100.254)"#,
        ),
        (
            "bad reservation",
            with(
                &conf,
                "/ipam/reserved",
                json!(["198.51.100.12", "198.51.100.20-2001:db8::1"]),
            ),
            7,
            r#"ipam.reserved[1]: "198.51.100.20-2001:db8::1": range ends are of different IP families"#,
        ),
        (
            "unknown pool",
            with(
                &conf,
                "/ipam/ippools",
                json!({"ipv4": ["test-ippool", "nope"]}),
            ),
            7,
            r#"ipam.ippools.ipv4[1]: "nope": no such ippool in the store"#,
        ),
        (
            "pool of the wrong family",
            with(&conf, "/ipam/ippools", json!({"ipv6": ["test-ippool"]})),
            7,
            r#"ipam.ippools.ipv6[0]: "test-ippool": is an IPv4 pool"#,
        ),
        (
            "neither ranges nor ippools",
            with(
                &conf,
                "/ipam",
                json!({"type": "ipam-cni", "dataDir": d.to_str().unwrap()}),
            ),
            7,
            "neither `ranges` nor `ippools`",
        ),
        (
            "relative dataDir",
            with(&conf, "/ipam/dataDir", json!("var/lib/x")),
            7,
            r#"ipam.dataDir: "var/lib/x": must be an absolute path"#,
        ),
        (
            "unknown store",
            with(&conf, "/ipam/store", json!("etcd")),
            7,
            r#"ipam.store: "etcd": must be "redb", "sled" or {"kubernetes""#,
        ),
        (
            "no name",
            with(&conf, "/name", Value::Null),
            7,
            "name: is required",
        ),
        (
            "a network name that cannot name a pool",
            with(&conf, "/name", json!("-net")),
            7,
            r#"name: "-net": must be 1-253 characters"#,
        ),
        (
            "kubernetes store with a relative kubeconfig",
            with(
                &conf,
                "/ipam/store",
                json!({"kubernetes": {"kubeconfig": "k"}}),
            ),
            7,
            r#"ipam.store.kubernetes.kubeconfig: "k": must be an absolute path"#,
        ),
        (
            "kubernetes store with a kubeconfig of the wrong type",
            with(
                &conf,
                "/ipam/store",
                json!({"kubernetes": {"kubeconfig": 5}}),
            ),
            6,
            "ipam.store.kubernetes.kubeconfig: invalid type: integer `5`",
        ),
    ];
    for (name, c, code, msg) in table {
        expect(d, name, call("ADD", "newcomer", &c), code, msg);
    }
    // A Kubernetes store whose kubeconfig cannot be read: an I/O error naming the file, for
    // every command (STATUS: not ready).
    let mut kube = with(
        &conf,
        "/ipam/store",
        json!({"kubernetes": {"kubeconfig": "/nonexistent/kubeconfig"}}),
    );
    kube["cni.dev/valid-attachments"] = json!([]);
    for (command, code) in [
        ("ADD", 5),
        ("DEL", 5),
        ("CHECK", 5),
        ("GC", 5),
        ("STATUS", 50),
    ] {
        expect(
            d,
            command,
            call(command, "holder", &kube),
            code,
            "/nonexistent/kubeconfig",
        );
    }
}

#[test]
fn unavailable_addresses_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let conf = setup(d);
    let table: Vec<(&str, Call<'_>, u64, &str)> = vec![
        (
            "reserved by a ReservedIP",
            call("ADD", "c", &conf).var("CNI_ARGS", "IP=10.6.168.131"),
            101,
            r#"requested address 10.6.168.131 is not available: it is reserved by ReservedIP "test-reservedip""#,
        ),
        (
            "reserved by the network",
            call("ADD", "c", &with(&conf, "/ipam/reserved", json!(["198.51.100.15"])))
                .var("CNI_ARGS", "IP=198.51.100.15"),
            101,
            "requested address 198.51.100.15 is not available: it is reserved by the network configuration",
        ),
        (
            "held by another owner",
            call("ADD", "c", &conf).var("CNI_ARGS", "IP=198.51.100.10"),
            101,
            "requested address 198.51.100.10 is not available: it is held by holder/eth0",
        ),
        (
            "outside every range",
            call("ADD", "c", &with(&conf, "/ipam/ippools", json!({})))
                .var("CNI_ARGS", "IP=192.0.2.1"),
            101,
            "requested address 192.0.2.1 (CNI_ARGS IP[0]) is not available: it is in none of the ranges",
        ),
        (
            "in the subnet but not the pool",
            call("ADD", "c", &with(&conf, "/runtimeConfig", json!({"ips": ["10.6.0.9"]}))),
            101,
            r#"requested address 10.6.0.9 is not available: it is in none of the pools "test-ippool""#,
        ),
        (
            "every candidate used up",
            call("ADD", "c", &conf),
            100,
            r#"all IP addresses used up: pool "test-ippool" (total 3, reserved 2, allocated 1, available 0)"#,
        ),
    ];
    for (name, call, code, msg) in table {
        expect(d, name, call, code, msg);
    }
}

#[test]
fn unusable_data_directories() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"not a directory").unwrap();
    let conf = good(&file);
    // `msg` says what failed, `details` why, each once (runtimes print them joined).
    let failed = format!("store I/O error: use data directory {}", file.display());
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([]);
    for (command, conf, code, msg) in [
        ("ADD", &conf, 5, failed.clone()),
        ("DEL", &conf, 5, failed.clone()),
        ("CHECK", &conf, 5, failed.clone()),
        ("GC", &gc, 5, failed.clone()),
        (
            "STATUS",
            &conf,
            50,
            format!("the store is not usable: {failed}"),
        ),
    ] {
        let r = call(command, "c", conf).run();
        assert_eq!(r.code(), Some(code), "{command}: {r:#?}");
        assert_eq!(
            (r.msg(), r.details()),
            (msg.as_str(), "exists and is not a directory"),
            "{command}"
        );
    }
    assert_eq!(std::fs::read(&file).unwrap(), b"not a directory");

    // A store file that is not a database: refused, and left byte for byte as it was.
    let garbage = dir.path().join("garbage");
    std::fs::create_dir(&garbage).unwrap();
    let db = garbage.join("store.redb");
    std::fs::write(&db, vec![0x5a; 4096]).unwrap();
    let r = call("ADD", "c", &good(&garbage)).run();
    assert_eq!(r.code(), Some(5), "{r:#?}");
    assert_eq!(
        r.msg(),
        format!("store I/O error: open {}", db.display()),
        "{r:#?}"
    );
    assert!(r.details().contains("Not a redb database"), "{r:#?}");
    r.assert_cause_once();
    assert_eq!(std::fs::read(&db).unwrap(), vec![0x5a; 4096]);
}

/// While another process holds the store past the bounded wait, the plugin fails with 11
/// (try again later) and changes nothing.
#[test]
fn a_busy_store_is_try_again_later() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let conf = setup(d);
    let before = dump(d);
    let held = ipam_at(d);
    let r = call("ADD", "c", &conf)
        .var("IPAM_CNI_LOCK_WAIT_MS", "300")
        .run();
    drop(held);
    assert_eq!(r.code(), Some(11), "{r:#?}");
    assert!(r.msg().contains("try again later"), "{}", r.msg());
    assert_eq!(dump(d), before);
}
