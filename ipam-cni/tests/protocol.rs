//! The CNI protocol through the real binary: results in each version, and the semantics of
//! every command (ADD, DEL, CHECK, GC, STATUS, VERSION). Every test runs twice: with the
//! plugin alone, and with a node agent answering for it (`both_paths!`).

mod common;

use common::{call, dump, holders, ipam_at, netconf};
use ipam_core::{ObjectName, ReservedIp, ReservedIpSpec};
use serde_json::{json, Value};

fn dual_stack(dir: &std::path::Path, version: &str) -> Value {
    netconf(
        version,
        "net1",
        dir,
        json!({
            "ranges": [
                [{"subnet": "198.51.100.0/24", "rangeStart": "198.51.100.10", "rangeEnd": "198.51.100.20",
                  "gateway": "198.51.100.1"}],
                [{"subnet": "2001:db8::/64", "rangeStart": "2001:db8::10", "rangeEnd": "2001:db8::20"}]
            ],
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}],
            "dns": {"nameservers": ["198.51.100.53"], "domain": "example.test", "search": ["example.test"]}
        }),
    )
}

crate::both_paths! {
    /// ADD answers in the request's version: 0.3.x and 0.4.0 carry `ips[].version`, later
    /// versions do not; addresses carry the subnet's prefix length; gateway, routes and dns come
    /// from the configuration.
    fn results_are_written_in_the_request_version() {
        let dir = tempfile::tempdir().unwrap();
        for (i, version) in ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
            .iter()
            .enumerate()
        {
            let r = call("ADD", &format!("c{i}"), &dual_stack(dir.path(), version))
                .run()
                .ok();
            let old = *version < "1.0.0";
            let ip = |fam: &str, addr: String, gw: &str| {
                let mut v = json!({"address": addr, "gateway": gw});
                if old {
                    v["version"] = json!(fam);
                }
                v
            };
            assert_eq!(
                r.json,
                json!({
                    "cniVersion": version,
                    "ips": [
                        ip("4", format!("198.51.100.{}/24", 10 + i), "198.51.100.1"),
                        ip("6", format!("2001:db8::{}/64", 10 + i), "2001:db8::1"),
                    ],
                    "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}],
                    "dns": {"nameservers": ["198.51.100.53"], "domain": "example.test", "search": ["example.test"]}
                }),
                "{version}"
            );
        }
    }

    fn version_lists_every_supported_version() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dual_stack(dir.path(), "0.3.1");
        for stdin in [
            conf.to_string().into_bytes(),
            Vec::new(),
            b"{\"cniVersion\":\"9.9.9\"}".to_vec(),
        ] {
            let r = call("VERSION", "", &conf)
                .unset("CNI_CONTAINERID")
                .stdin(stdin)
                .run()
                .ok();
            assert_eq!(
                r.json,
                json!({"cniVersion": "1.1.0", "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]})
            );
        }
        assert!(
            !dir.path().join("store.redb").exists(),
            "VERSION opened the store"
        );
    }

    /// ADD is all or nothing and repeatable; DEL is idempotent, needs no netns, and on a data
    /// directory that does not exist yet succeeds without creating it.
    fn add_repeats_and_del_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dual_stack(dir.path(), "1.1.0");
        let first = call("ADD", "c1", &conf).run().ok();
        let again = call("ADD", "c1", &conf).run().ok();
        assert_eq!(first.json, again.json);
        assert_eq!(holders(dir.path()).len(), 2);
        // The same container on a second interface is a second owner.
        let other_if = call("ADD", "c1", &conf)
            .var("CNI_IFNAME", "net1")
            .run()
            .ok();
        assert_ne!(other_if.addresses(), first.addresses());

        for _ in 0..2 {
            let r = call("DEL", "c1", &conf).unset("CNI_NETNS").run().ok();
            assert_eq!(r.stdout, "", "DEL prints nothing");
        }
        call("DEL", "never-added", &conf).run().ok();
        assert_eq!(holders(dir.path()).len(), 2, "only c1/eth0 was released");

        let missing = dir.path().join("not-yet");
        call("DEL", "c1", &dual_stack(&missing, "1.1.0")).run().ok();
        assert!(!missing.exists(), "DEL created the data directory");
        // A DEL with a configuration gone bad since ADD still releases.
        let mut broken = conf.clone();
        broken["ipam"]["ranges"] = json!([[{"subnet": "garbage"}]]);
        call("DEL", "c1", &broken)
            .var("CNI_IFNAME", "net1")
            .run()
            .ok();
        assert!(holders(dir.path()).is_empty());
    }

    fn check_compares_with_prev_result() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dual_stack(dir.path(), "1.0.0");
        let added = call("ADD", "c1", &conf).run().ok();
        let mut with_prev = conf.clone();
        with_prev["prevResult"] = added.json.clone();
        call("CHECK", "c1", &with_prev).run().ok();
        call("CHECK", "c1", &conf).run().ok();

        let mut wrong = with_prev.clone();
        wrong["prevResult"]["ips"][0]["address"] = json!("198.51.100.99/24");
        let r = call("CHECK", "c1", &wrong).run();
        assert_eq!(r.code(), Some(102), "{r:#?}");
        assert!(
            r.msg()
                .contains("prevResult lists 198.51.100.99 but the owner holds"),
            "{}",
            r.msg()
        );

        let r = call("CHECK", "stranger", &conf).run();
        assert_eq!(r.code(), Some(102), "{r:#?}");
        assert!(
            r.msg()
                .contains("there is no prevResult and the owner holds no address"),
            "{}",
            r.msg()
        );
    }

    /// GC releases what this network's stale owners hold, and nothing of other networks.
    /// Tear-down needs the network, the store and the owner; nothing else may keep DEL or GC from
    /// releasing. A bad logging setting falls back to stderr at warn, with a warning there; a
    /// malformed CNI_ARGS (which only ADD reads) is not looked at. ADD still refuses both.
    fn del_and_gc_release_despite_settings_they_do_not_need() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dual_stack(dir.path(), "1.1.0");
        let bad_logs = [
            (
                json!({"level": "loud"}),
                r#"ipam.log.level: "loud": must be one of"#,
            ),
            (
                json!({"level": 5}),
                "ipam.log.level: invalid type: integer `5`",
            ),
            (
                json!({"file": "relative.log"}),
                r#"ipam.log.file: "relative.log": must be an absolute path"#,
            ),
            (json!("debug"), r#"ipam.log: invalid type: string "debug""#),
        ];
        for (k, (log, why)) in bad_logs.iter().enumerate() {
            let id = format!("c{k}");
            let mut bad = conf.clone();
            bad["ipam"]["log"] = log.clone();
            let r = call("ADD", &id, &bad).run();
            assert_eq!(
                r.code(),
                Some(if k % 2 == 0 { 7 } else { 6 }),
                "{log}: {r:#?}"
            );
            assert!(r.msg().contains(why), "{log}: {r:#?}");

            call("ADD", &id, &conf).run().ok();
            let r = call("DEL", &id, &bad).run().ok();
            assert!(
                r.stderr.contains(why) && r.stderr.contains("WARN"),
                "{log}: no warning on stderr: {r:#?}"
            );
            assert!(
                holders(dir.path()).is_empty(),
                "{log}: DEL released nothing"
            );

            call("ADD", &id, &conf).run().ok();
            let mut gc = bad.clone();
            gc["cni.dev/valid-attachments"] = json!([]);
            let r = call("GC", "", &gc).run().ok();
            assert!(
                r.stderr.contains(why),
                "{log}: no warning on stderr: {r:#?}"
            );
            assert!(holders(dir.path()).is_empty(), "{log}: GC released nothing");
        }

        call("ADD", "c1", &conf).run().ok();
        let r = call("ADD", "c2", &conf).var("CNI_ARGS", "garbage").run();
        assert_eq!(r.code(), Some(4), "{r:#?}");
        call("DEL", "c1", &conf)
            .var("CNI_ARGS", "garbage")
            .run()
            .ok();
        assert!(holders(dir.path()).is_empty());
    }

    fn gc_releases_stale_attachments_of_this_network_only() {
        let dir = tempfile::tempdir().unwrap();
        let net1 = dual_stack(dir.path(), "1.1.0");
        let mut net2 = netconf(
            "1.1.0",
            "net2",
            dir.path(),
            json!({"ranges": [[{"subnet": "192.0.2.0/24"}]]}),
        );
        for id in ["live", "stale1", "stale2"] {
            call("ADD", id, &net1).run().ok();
            call("ADD", id, &net2).run().ok();
        }
        let mut gc = net1.clone();
        gc["cni.dev/valid-attachments"] = json!([{"containerID": "live", "ifname": "eth0"}]);
        let r = call("GC", "", &gc)
            .unset("CNI_CONTAINERID")
            .unset("CNI_IFNAME")
            .run()
            .ok();
        assert_eq!(r.stdout, "");
        let mut left: Vec<String> = holders(dir.path())
            .into_iter()
            .map(|(a, id)| format!("{id} {a}"))
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "live 192.0.2.2",
                "live 198.51.100.10",
                "live 2001:db8::10",
                "stale1 192.0.2.3",
                "stale2 192.0.2.4"
            ]
        );
        // Again: nothing more to do.
        call("GC", "", &gc).run().ok();
        // Without the list GC refuses rather than releasing the whole network.
        net2["cniVersion"] = json!("1.1.0");
        let r = call("GC", "", &net2).run();
        assert_eq!(r.code(), Some(7), "{r:#?}");
        assert_eq!(holders(dir.path()).len(), 5);
    }

    /// STATUS: 0 while every range set and pool family has a free address, 50 when one has
    /// none or its pool does not exist; a reservation counts.
    fn status_reports_readiness() {
        let dir = tempfile::tempdir().unwrap();
        let conf = netconf(
            "1.1.0",
            "tiny",
            dir.path(),
            json!({"ranges": [[{"subnet": "198.51.100.0/24", "rangeStart": "198.51.100.10", "rangeEnd": "198.51.100.11"}]]}),
        );
        call("STATUS", "", &conf).run().ok();
        call("ADD", "a", &conf).run().ok();
        call("STATUS", "", &conf).run().ok();
        {
            let ipam = ipam_at(dir.path());
            pollster::block_on(
                ipam.apply_reserved_ip(
                    ReservedIp::new(
                        "hold-11",
                        ReservedIpSpec {
                            ips: vec!["198.51.100.11".into()],
                            ip_version: None,
                        },
                    )
                    .unwrap(),
                ),
            )
            .unwrap();
        }
        let r = call("STATUS", "", &conf).run();
        assert_eq!(r.code(), Some(50), "{r:#?}");
        assert_eq!(
            r.msg(),
            r#"ipam.ranges[0] cannot yield an address: "tiny-0" has no free address"#
        );
        let before = dump(dir.path());
        let r = call("ADD", "b", &conf).run();
        assert_eq!(r.code(), Some(100));
        assert_eq!(dump(dir.path()), before);
        {
            let ipam = ipam_at(dir.path());
            pollster::block_on(ipam.delete_reserved_ip(&ObjectName::new("hold-11").unwrap())).unwrap();
        }
        call("STATUS", "", &conf).run().ok();
        assert_eq!(
            call("ADD", "b", &conf).run().ok().addresses(),
            ["198.51.100.11/24"]
        );

        let mut unknown = conf.clone();
        unknown["ipam"] =
            json!({"type": "ipam-cni", "dataDir": dir.path(), "ippools": {"ipv6": ["nope"]}});
        let r = call("STATUS", "", &unknown).run();
        assert_eq!(r.code(), Some(50), "{r:#?}");
        assert!(r.msg().contains(r#""nope" does not exist"#), "{}", r.msg());
    }

    /// Pod identity from CNI_ARGS is recorded with the allocation; logs go to the configured
    /// file, never to stdout.
    fn pod_identity_and_logging() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("ipam.log");
        let mut conf = dual_stack(dir.path(), "1.1.0");
        conf["ipam"]["log"] = json!({"level": "info", "file": log});
        let r = call("ADD", "c1", &conf)
            .var(
                "CNI_ARGS",
                "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_UID=1234;K8S_POD_INFRA_CONTAINER_ID=c1",
            )
            .run()
            .ok();
        assert!(r.stderr.is_empty(), "{}", r.stderr);
        let allocations = pollster::block_on(ipam_at(dir.path()).allocations(None)).unwrap();
        let pod = allocations[0].pod.clone().expect("pod recorded");
        assert_eq!(
            (
                pod.namespace.as_deref(),
                pod.name.as_str(),
                pod.uid.as_deref()
            ),
            (Some("default"), "web-0", Some("1234"))
        );
        // podman sends the Pod's name without a namespace: what is given is recorded.
        call("ADD", "podman1", &conf)
            .var("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=web-1")
            .run()
            .ok();
        let allocations = pollster::block_on(ipam_at(dir.path()).allocations(None)).unwrap();
        let podman = allocations
            .iter()
            .find(|a| a.owner.container_id() == "podman1")
            .and_then(|a| a.pod.clone())
            .expect("pod recorded without a namespace");
        assert_eq!((podman.namespace, podman.name.as_str()), (None, "web-1"));
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(
            text.contains("INFO ADD c1/eth0 on \"net1\": 198.51.100.10, 2001:db8::10"),
            "{text}"
        );

        // The environment overrides the level: a failure logged at warn goes to stderr.
        let mut bad = dual_stack(dir.path(), "1.1.0");
        bad["ipam"]["ippools"] = json!({"ipv4": ["nope"]});
        let r = call("ADD", "c2", &bad).var("IPAM_CNI_LOG", "warn").run();
        assert_eq!(r.code(), Some(7));
        assert!(
            r.stderr.contains(
                r#"WARN ADD c2/eth0 on "net1" failed with code 7: ipam.ippools.ipv4[0]: "nope": no such ippool"#
            ),
            "{}",
            r.stderr
        );
    }

    /// Every failed call leaves one log line, in one format whatever stage refused it, naming
    /// the command, the attachment (for the commands that act on one) and the network as far as
    /// they could be read: `CMD ID/IFNAME on "NET" failed with code N: MSG[; details: ...]`.
    fn failures_are_logged_naming_container_and_network() {
        let dir = tempfile::tempdir().unwrap();
        let conf = netconf(
            "1.1.0",
            "net1",
            dir.path(),
            json!({"ranges": [[{"subnet": "198.51.100.0/24", "rangeStart": "198.51.100.10", "rangeEnd": "198.51.100.10"}]]}),
        );
        call("ADD", "holder", &conf).run().ok();
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let mut on_file = conf.clone();
        on_file["ipam"]["dataDir"] = json!(file);
        let mut bad_range = conf.clone();
        bad_range["ipam"]["ranges"] = json!([[{"subnet": "198.51.100.0/33"}]]);
        let cases = [
            (
                call("ADD", "c1", &conf),
                r#"ADD c1/eth0 on "net1" failed with code 100: all IP addresses used up"#,
            ),
            (
                call("ADD", "c1", &bad_range),
                r#"ADD c1/eth0 on "net1" failed with code 7: ipam.ranges[0][0].subnet"#,
            ),
            (
                call("DEL", "c1", &on_file),
                &format!(
                    r#"DEL c1/eth0 on "net1" failed with code 5: store I/O error: use data directory {}; details: exists and is not a directory"#,
                    file.display()
                ),
            ),
            (
                call("ADD", "c1", &conf).var("CNI_IFNAME", "a-very-long-ifname"),
                r#"ADD c1/a-very-long-ifname on "net1" failed with code 4: CNI_IFNAME"#,
            ),
            (
                call("ADD", "a\nb", &conf),
                r#"ADD "a\nb"/eth0 on "net1" failed with code 4: CNI_CONTAINERID"#,
            ),
            (
                call("CHECK", "c1", &conf).unset("CNI_IFNAME"),
                r#"CHECK c1/- on "net1" failed with code 4: CNI_IFNAME is not set"#,
            ),
            (
                call("ADD", "c1", &conf).stdin(b"{".to_vec()),
                "ADD c1/eth0 on - failed with code 6: stdin is not valid JSON",
            ),
            (
                call("GC", "", &conf),
                r#"GC on "net1" failed with code 7: cni.dev/valid-attachments: is required"#,
            ),
            (
                call("ATTACH", "c1", &conf),
                r#""ATTACH" on "net1" failed with code 4: CNI_COMMAND"#,
            ),
        ];
        for (call, expect) in cases {
            let r = call.run();
            assert_ne!(r.status, Some(0), "{expect}");
            let lines: Vec<&str> = r.stderr.lines().collect();
            assert_eq!(lines.len(), 1, "one line per failure: {r:#?}");
            let (_, line) = lines[0]
                .split_once(" WARN ")
                .unwrap_or_else(|| panic!("not a WARN line: {r:#?}"));
            assert!(
                line.starts_with(expect),
                "{line:?} does not start with {expect:?}"
            );
        }
    }

    /// `"store": "sled"` works end to end like the default; the two backends keep separate files
    /// in the same directory layout, so a network must keep its choice.
    fn sled_store_through_the_binary() {
        let dir = tempfile::tempdir().unwrap();
        let mut conf = dual_stack(dir.path(), "1.1.0");
        conf["ipam"]["store"] = json!("sled");
        let first = call("ADD", "c1", &conf).run().ok();
        assert_eq!(first.addresses(), ["198.51.100.10/24", "2001:db8::10/64"]);
        assert_eq!(call("ADD", "c1", &conf).run().ok().json, first.json);
        let second = call("ADD", "c2", &conf).run().ok();
        assert_eq!(second.addresses(), ["198.51.100.11/24", "2001:db8::11/64"]);
        call("DEL", "c1", &conf).run().ok();
        call("STATUS", "", &conf).run().ok();
        let mut gc = conf.clone();
        gc["cni.dev/valid-attachments"] = json!([]);
        call("GC", "", &gc).run().ok();
        assert_eq!(
            call("ADD", "c3", &conf).run().ok().addresses(),
            ["198.51.100.12/24", "2001:db8::12/64"]
        );
    }

    /// An ADD whose result cannot be written (stdout full, or closed by a runtime that went
    /// away) fails and gives back what it took: the runtime never learnt the address, so it
    /// would never release it. A repeated ADD that fails the same way keeps what was held.
    fn an_add_whose_result_cannot_be_written_fails_and_gives_back() {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let dir = tempfile::tempdir().unwrap();
        let conf = dual_stack(dir.path(), "1.0.0");
        let run = |id: &str, stdout: Stdio, close_early: bool| {
            let mut child = Command::new(common::BIN)
                .env_clear()
                .envs([
                    ("CNI_COMMAND", "ADD"),
                    ("CNI_CONTAINERID", id),
                    ("CNI_IFNAME", "eth0"),
                    ("CNI_NETNS", "/var/run/netns/none"),
                    ("CNI_PATH", "/nonexistent"),
                ])
                .stdin(Stdio::piped())
                .stdout(stdout)
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            if close_early {
                drop(child.stdout.take());
            }
            let mut stdin = child.stdin.take().unwrap();
            stdin
                .write_all(&common::routed(conf.to_string().as_bytes()))
                .unwrap();
            drop(stdin);
            let out = child.wait_with_output().unwrap();
            common::assert_answered_as_asked(&String::from_utf8_lossy(&out.stderr));
            out
        };
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let out = run("c1", Stdio::from(full), false);
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("cannot write the result") && stderr.contains("released"),
            "{stderr}"
        );
        assert!(holders(dir.path()).is_empty(), "{:?}", holders(dir.path()));

        let out = run("c2", Stdio::piped(), true);
        assert_eq!(out.status.code(), Some(1));
        assert!(holders(dir.path()).is_empty());

        // Delivered once, the addresses stay held even if a repeat cannot be delivered.
        let held = call("ADD", "c3", &conf).run().ok().addresses();
        assert_eq!(held.len(), 2);
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let out = run("c3", Stdio::from(full), false);
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(holders(dir.path()).len(), 2);
    }
}
