//! One data directory, one kind of store, through the real binaries: a network configured
//! with `"store": "sled"` on a directory that holds a redb store (or `ipamctl --store redb`
//! on a sled directory) is refused with CNI code 5 / exit 1, naming what the directory
//! holds, instead of silently making a second store that hands out the same addresses.

mod common;

use std::process::Command;

use common::{call, netconf};
use serde_json::{json, Value};

fn network(dir: &std::path::Path, name: &str, store: &str) -> Value {
    let mut conf = netconf(
        "1.0.0",
        name,
        dir,
        json!({"ranges": [[{"subnet": "198.51.100.0/24"}]]}),
    );
    conf["ipam"]["store"] = json!(store);
    conf
}

fn ipamctl(dir: &std::path::Path, store: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(common::ipamctl())
        .arg("--data-dir")
        .arg(dir)
        .args(["--store", store])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().expect("exited"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn two_networks_of_different_kinds_cannot_share_a_data_directory() {
    for (kind, other) in [("redb", "sled"), ("sled", "redb")] {
        let dir = tempfile::tempdir().unwrap();
        let first = call("ADD", "c1", &network(dir.path(), "net-a", kind))
            .run()
            .ok();
        assert_eq!(first.addresses(), ["198.51.100.2/24"], "{kind}");

        let refused = call("ADD", "c2", &network(dir.path(), "net-b", other)).run();
        assert_eq!(refused.code(), Some(5), "{kind} then {other}: {refused:#?}");
        for words in [
            &*dir.path().display().to_string(),
            &format!("holds a {kind} store"),
            &format!("it cannot be opened as {other}"),
        ] {
            // What failed in msg, why in details: the whole line a runtime prints.
            let said = format!("{}: {}", refused.msg(), refused.json["details"]);
            assert!(said.contains(words), "{words:?} in {said:?}");
        }

        let (status, stdout, stderr) = ipamctl(dir.path(), other, &["get", "allocations"]);
        assert_eq!((status, stdout.as_str()), (1, ""), "{stderr}");
        assert!(
            stderr.contains(&format!("holds a {kind} store")),
            "{stderr}"
        );

        // The store itself is untouched and still answers as its own kind.
        let (status, stdout, stderr) =
            ipamctl(dir.path(), kind, &["get", "allocations", "-o", "json"]);
        assert_eq!(status, 0, "{stderr}");
        let items: Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(items["items"].as_array().unwrap().len(), 1, "{stdout}");
    }
}
