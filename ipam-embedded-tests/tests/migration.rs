//! A store written by the first release (schema 1, `fixtures/v1/`) opens with this build and
//! is migrated on first open: every holder kept, inline pools no longer stored, the owner
//! indexes exact, and the store works on.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipam_core::testkit::{check_indexes_exact, name, owner};
use ipam_core::{Error, Ipam, Request, Slot, Store};

fn fixture(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/v1")
        .join(kind)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn open(kind: &str, dir: &Path) -> Box<dyn Store> {
    let wait = Duration::from_secs(30);
    match kind {
        "redb" => Box::new(
            ipam_redb::RedbStore::open(dir, &ipam_redb::OpenOptions { lock_wait: wait }).unwrap(),
        ),
        _ => Box::new(
            ipam_sled::SledStore::open(dir, &ipam_sled::OpenOptions { lock_wait: wait }).unwrap(),
        ),
    }
}

#[test]
fn a_first_release_store_is_migrated_on_first_open() {
    for kind in ["redb", "sled"] {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("store");
        copy_dir(&fixture(kind), &dir);
        let ipam = Ipam::new(open(kind, &dir));
        pollster::block_on(async {
            let held: BTreeSet<(String, String, String)> = ipam
                .allocations(None)
                .await
                .unwrap()
                .into_iter()
                .map(|a| {
                    (
                        a.address.to_string(),
                        a.owner.container_id().to_owned(),
                        a.pool.to_string(),
                    )
                })
                .collect();
            let want: BTreeSet<(String, String, String)> = [
                ("10.6.168.133", "pod-a", "test-ippool"),
                ("10.20.0.10", "inl-1", "net2-0-0"),
                ("10.20.1.2", "inl-3", "net2-0-1"),
                ("10.20.1.3", "inl-4", "net2-0-1"),
                ("fd20::2", "inl-1", "net2-1"),
                ("fd20::4", "inl-3", "net2-1"),
                ("fd20::5", "inl-4", "net2-1"),
            ]
            .into_iter()
            .map(|(a, o, p)| (a.to_owned(), o.to_owned(), p.to_owned()))
            .collect();
            assert_eq!(held, want, "{kind}");
            let pod = ipam.allocations(None).await.unwrap()[0].pod.clone();
            assert!(
                pod.is_some_and(|p| p.namespace.as_deref() == Some("default")),
                "{kind}"
            );
            assert_eq!(check_indexes_exact(&**ipam.store()).await, 7, "{kind}");
            let pools: Vec<String> = ipam
                .pools()
                .await
                .unwrap()
                .iter()
                .map(|p| p.name().to_string())
                .collect();
            assert_eq!(
                pools,
                ["test-ippool"],
                "{kind}: inline pools are no longer stored"
            );
            assert_eq!(ipam.reserved_ips().await.unwrap().len(), 1);

            // The seed's pool is used up (two reserved, one held), as it was.
            let request = |id: &str| {
                Request::new(owner(id), "macvlan-net").slot(Slot::any_of([name("test-ippool")]))
            };
            assert!(matches!(
                ipam.allocate(&request("new")).await,
                Err(Error::Exhausted { .. })
            ));
            // Its holder's repeated ADD gets its address; its DEL releases it.
            assert_eq!(
                ipam.allocate(&request("pod-a")).await.unwrap()[0]
                    .allocation
                    .address
                    .to_string(),
                "10.6.168.133"
            );
            assert_eq!(ipam.release(&owner("pod-a"), None).await.unwrap().len(), 1);
            assert_eq!(
                ipam.owner_allocations(&owner("inl-1")).await.unwrap().len(),
                2,
                "{kind}"
            );
        });
        drop(ipam);
        // Opened again: already at the current schema, nothing changes.
        let ipam = Ipam::new(open(kind, &dir));
        assert_eq!(
            pollster::block_on(ipam.allocations(None)).unwrap().len(),
            6,
            "{kind}"
        );
    }
}
