//! Upgrades of the stored records from one schema to the next: pure functions over encoded
//! `(key, record)` pairs that the byte backends run once, in one write transaction, when
//! they open a store written by an older release.
//!
//! Schema 1 (the first release) kept allocation state per pool: a bitmap per pool and
//! window (`b`), a record per allocated address (`a`), a list per owner (`o`), and a stored
//! pool for every inline range of a CNI network. Schema 2 keeps it per address, store-wide:
//! one [`BlockRecord`] per window with each address's holder, and an owner index of
//! `(network, address)` entries. Inline pools are no longer stored.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::addr::{to_u128, Family};
use crate::block::BlockRecord;
use crate::error::StoreError;
use crate::holder::{Allocation, Held, Holder};
use crate::name::Owner;
use crate::search::block_index;
use crate::store::{Key, Record, RECORD_FORMAT};

/// The schema this build reads and writes.
pub const SCHEMA: u64 = 2;

/// Every stored record as encoded bytes: `(key, record)` pairs, records without a backend's
/// version header.
pub type RawRecords = Vec<(Vec<u8>, Vec<u8>)>;

/// A migration from one schema to the next, over every stored record.
pub type Migration = fn(RawRecords) -> Result<RawRecords, StoreError>;

/// The migration from schema `from` to `from + 1`, if this build has one.
pub fn migration(from: u64) -> Option<Migration> {
    match from {
        1 => Some(from_v1),
        _ => None,
    }
}

/// Schema 1 to 2: allocations become holders in store-wide blocks and owner index entries;
/// per-pool bitmaps and per-owner lists are dropped (they are rebuilt from the allocation
/// records, which were the complete truth); pools that were a network's inline ranges are
/// dropped. Refused, changing nothing, if two allocation records hold one address (which
/// overlapping pools allowed in schema 1): the message names both holders.
pub fn from_v1(records: RawRecords) -> Result<RawRecords, StoreError> {
    let corrupt = |key: &[u8], reason: String| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: format!("schema 1 record: {reason}"),
    };
    let mut kept = Vec::new();
    let mut allocations: Vec<Allocation> = Vec::new();
    for (key, value) in records {
        match key.first() {
            Some(b'p' | b'r' | b's' | b'c') => kept.push((key, value)),
            Some(b'a') => {
                let body = match value.split_first() {
                    Some((&RECORD_FORMAT, body)) => body,
                    _ => return Err(corrupt(&key, "unknown record format".into())),
                };
                let a: Allocation =
                    serde_json::from_slice(body).map_err(|e| corrupt(&key, e.to_string()))?;
                allocations.push(a);
            }
            Some(b'b' | b'o') => {}
            _ => return Err(corrupt(&key, "unknown key kind".into())),
        }
    }
    let inline = |pool: &str, network: &str| {
        pool.strip_prefix(network)
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(|rest| {
                let parts: Vec<&str> = rest.split('-').collect();
                parts.len() <= 2
                    && parts
                        .iter()
                        .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            })
    };
    let inline_pools: Vec<Vec<u8>> = allocations
        .iter()
        .filter(|a| inline(a.pool.as_str(), &a.network))
        .map(|a| Key::Pool(a.pool.clone()).encode())
        .collect();
    kept.retain(|(k, _)| !inline_pools.contains(k));

    let mut blocks: BTreeMap<(Family, u128), BlockRecord> = BTreeMap::new();
    let mut index: BTreeMap<Owner, Vec<Held>> = BTreeMap::new();
    let mut by_address: BTreeMap<IpAddr, &Allocation> = BTreeMap::new();
    for a in &allocations {
        if let Some(other) = by_address.insert(a.address, a) {
            return Err(StoreError::Corrupt {
                key: a.address.to_string(),
                reason: format!(
                    "held twice: by {} (network {:?}, pool {:?}) and by {} (network {:?}, pool {:?}); \
                     release one with the previous release's `ipam-cni` DEL, then open the store again",
                    other.owner, other.network, other.pool.as_str(), a.owner, a.network, a.pool.as_str()
                ),
            });
        }
        let family = Family::of(a.address);
        let value = to_u128(a.address);
        let index_of = block_index(value);
        blocks
            .entry((family, index_of))
            .or_insert_with(|| BlockRecord::new(family, index_of))
            .insert(
                value,
                Holder {
                    owner: a.owner.clone(),
                    network: a.network.clone(),
                    pool: a.pool.clone(),
                    pod: a.pod.clone(),
                    node: a.node.clone(),
                },
            );
        index.entry(a.owner.clone()).or_default().push(Held {
            network: a.network.clone(),
            address: a.address,
        });
    }
    for ((family, i), block) in blocks {
        kept.push((
            Key::Block { family, index: i }.encode(),
            Record::Block(block).encode(),
        ));
    }
    for (owner, held) in index {
        kept.push((Key::Owner(owner).encode(), Record::Owner(held).encode()));
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::holder::PodRef;
    use crate::name::ObjectName;

    fn v1_allocation(pool: &str, network: &str, id: &str, address: &str) -> (Vec<u8>, Vec<u8>) {
        let address: IpAddr = address.parse().unwrap();
        let mut key = vec![b'a'];
        key.extend_from_slice(pool.as_bytes());
        key.push(0);
        key.push(Family::of(address).version());
        key.extend_from_slice(&to_u128(address).to_be_bytes());
        let json = format!(
            r#"{{"address":"{address}","pool":"{pool}","network":"{network}","owner":["{id}","eth0"],"pod":{{"namespace":"default","name":"{id}"}}}}"#
        );
        let mut value = vec![RECORD_FORMAT];
        value.extend_from_slice(json.as_bytes());
        (key, value)
    }

    fn v1_pool(name: &str) -> (Vec<u8>, Vec<u8>) {
        let pool = crate::testkit::pool(name, "10.6.0.0/24", &["10.6.0.0/24"]);
        (
            Key::Pool(pool.name().clone()).encode(),
            Record::Pool(pool).encode(),
        )
    }

    #[test]
    fn allocations_become_holders_and_inline_pools_go() {
        let records = vec![
            v1_pool("net2-0-1"),
            v1_pool("test-ippool"),
            v1_allocation("net2-0-1", "net2", "c1", "10.20.1.2"),
            v1_allocation("test-ippool", "macvlan-net", "c2", "10.6.0.5"),
            (b"btest-ippool\0xxxx".to_vec(), b"\x01ignored".to_vec()),
            (b"oc1\0eth0".to_vec(), b"\x01ignored".to_vec()),
        ];
        let out = from_v1(records).unwrap();
        let decoded: Vec<(Key, Record)> = out
            .iter()
            .map(|(k, v)| {
                let key = Key::decode(k).unwrap();
                let rec = Record::decode(&key, v).unwrap();
                (key, rec)
            })
            .collect();
        let pools: Vec<&Key> = decoded
            .iter()
            .map(|(k, _)| k)
            .filter(|k| matches!(k, Key::Pool(_)))
            .collect();
        assert_eq!(pools, [&Key::Pool(ObjectName::new("test-ippool").unwrap())]);
        let holders: Vec<Allocation> = decoded
            .iter()
            .filter_map(|(_, r)| match r {
                Record::Block(b) => Some(b.allocations().collect::<Vec<_>>()),
                _ => None,
            })
            .flatten()
            .collect();
        assert_eq!(holders.len(), 2);
        assert_eq!(
            holders[0].pod,
            Some(PodRef {
                namespace: Some("default".into()),
                name: "c2".into(),
                uid: None,
                statefulset: None,
            })
        );
        let owners = decoded
            .iter()
            .filter(|(k, _)| matches!(k, Key::Owner(_)))
            .count();
        assert_eq!(owners, 2);
    }

    #[test]
    fn an_address_held_twice_is_refused_naming_both() {
        let records = vec![
            v1_allocation("a", "n1", "c1", "10.6.0.5"),
            v1_allocation("b", "n2", "c2", "10.6.0.5"),
        ];
        let err = from_v1(records).unwrap_err().to_string();
        assert!(err.contains("c1/eth0") && err.contains("c2/eth0"), "{err}");
    }
}
