//! The byte encoding of keys and records, for backends that store bytes: keys sort so that
//! every [`KeyRange`] is a contiguous byte range.

use serde::{Deserialize, Serialize};

use super::{Key, KeyRange, PoolRanges, Record};
use crate::addr::Family;
use crate::block::BlockRecord;
use crate::error::StoreError;
use crate::name::{ObjectName, Owner};
use crate::pool::{IpPool, IpPoolSpec, PoolState};
use crate::reserved::{FamilySets, ReservedIp, ReservedIpSpec};
use crate::set::IntervalSet;

const TAG_POOL: u8 = b'p';
const TAG_RESERVED: u8 = b'r';
const TAG_SUMMARY: u8 = b's';
const TAG_BLOCK: u8 = b'B';
const TAG_CURSOR: u8 = b'c';
const TAG_OWNER: u8 = b'i';
const TAG_GUARD: u8 = b'g';

impl Key {
    /// The key as bytes. Names never contain a NUL byte, which separates fields; numbers are
    /// big-endian, so blocks sort by address.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(48);
        match self {
            Key::Pool(name) => tagged(&mut out, TAG_POOL, name.as_str()),
            Key::ReservedIp(name) => tagged(&mut out, TAG_RESERVED, name.as_str()),
            Key::ReservedSummary => out.push(TAG_SUMMARY),
            Key::PoolGuard => out.push(TAG_GUARD),
            Key::Block { family, index } => block_key(&mut out, *family, *index),
            Key::Cursor { pool, node } => {
                tagged(&mut out, TAG_CURSOR, pool.as_str());
                if let Some(node) = node {
                    out.push(0);
                    out.extend_from_slice(node.as_str().as_bytes());
                }
            }
            Key::Owner(owner) => {
                tagged(&mut out, TAG_OWNER, owner.container_id());
                out.push(0);
                out.extend_from_slice(owner.ifname().as_bytes());
            }
        }
        out
    }

    /// Reads [`Key::encode`] output.
    pub fn decode(bytes: &[u8]) -> Result<Key, StoreError> {
        let corrupt = |reason: &str| StoreError::Corrupt {
            key: String::from_utf8_lossy(bytes).into_owned(),
            reason: reason.to_owned(),
        };
        let (&tag, rest) = bytes.split_first().ok_or_else(|| corrupt("empty key"))?;
        let text = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| corrupt("not UTF-8"));
        let name = |b: &[u8]| ObjectName::new(text(b)?).map_err(|e| corrupt(&e.to_string()));
        Ok(match tag {
            TAG_POOL => Key::Pool(name(rest)?),
            TAG_RESERVED => Key::ReservedIp(name(rest)?),
            TAG_SUMMARY if rest.is_empty() => Key::ReservedSummary,
            TAG_GUARD if rest.is_empty() => Key::PoolGuard,
            TAG_CURSOR => match rest.iter().position(|&c| c == 0) {
                None => Key::Cursor {
                    pool: name(rest)?,
                    node: None,
                },
                Some(i) => Key::Cursor {
                    pool: name(&rest[..i])?,
                    node: Some(name(&rest[i + 1..])?),
                },
            },
            TAG_BLOCK => {
                let (&version, index) = rest.split_first().ok_or_else(|| corrupt("no family"))?;
                let family = Family::from_version(version).ok_or_else(|| corrupt("bad family"))?;
                let index =
                    u128::from_be_bytes(index.try_into().map_err(|_| corrupt("bad block index"))?);
                if index > family.max_value() >> crate::search::BLOCK_BITS {
                    return Err(corrupt("block index out of range"));
                }
                Key::Block { family, index }
            }
            TAG_OWNER => {
                let i = rest
                    .iter()
                    .position(|&c| c == 0)
                    .ok_or_else(|| corrupt("no separator"))?;
                Key::Owner(
                    Owner::new(text(&rest[..i])?, text(&rest[i + 1..])?)
                        .map_err(|e| corrupt(&e.to_string()))?,
                )
            }
            _ => return Err(corrupt("unknown key kind")),
        })
    }
}

impl KeyRange {
    /// The range as bytes `[start, end)`: exactly the encoded keys in the range lie there.
    pub fn bounds(&self) -> (Vec<u8>, Vec<u8>) {
        let whole = |tag: u8| (vec![tag], vec![tag + 1]);
        match self {
            KeyRange::Pools => whole(TAG_POOL),
            KeyRange::ReservedIps => whole(TAG_RESERVED),
            KeyRange::Owners => whole(TAG_OWNER),
            KeyRange::Cursors => whole(TAG_CURSOR),
            KeyRange::Blocks {
                family,
                first,
                last,
            } => {
                let mut start = Vec::with_capacity(18);
                block_key(&mut start, *family, *first);
                let mut end = Vec::with_capacity(18);
                match last.checked_add(1) {
                    Some(next) => block_key(&mut end, *family, next),
                    None => end.extend_from_slice(&[TAG_BLOCK, family.version() + 1]),
                }
                (start, end)
            }
        }
    }

    /// Whether `key` is in the range.
    pub fn contains(&self, key: &Key) -> bool {
        match (self, key) {
            (KeyRange::Pools, Key::Pool(_))
            | (KeyRange::ReservedIps, Key::ReservedIp(_))
            | (KeyRange::Owners, Key::Owner(_))
            | (KeyRange::Cursors, Key::Cursor { .. }) => true,
            (
                KeyRange::Blocks {
                    family,
                    first,
                    last,
                },
                Key::Block { family: f, index },
            ) => f == family && (first..=last).contains(&index),
            _ => false,
        }
    }
}

fn tagged(out: &mut Vec<u8>, tag: u8, text: &str) {
    out.push(tag);
    out.extend_from_slice(text.as_bytes());
}

fn block_key(out: &mut Vec<u8>, family: Family, index: u128) {
    out.push(TAG_BLOCK);
    out.push(family.version());
    out.extend_from_slice(&index.to_be_bytes());
}

/// The first byte of every encoded record: the version of the record format.
pub const RECORD_FORMAT: u8 = 1;

#[derive(Serialize, Deserialize)]
struct NamedSpec<S> {
    name: String,
    spec: S,
    /// A pool's state; absent for active pools and for reservations.
    #[serde(default, skip_serializing_if = "PoolState::is_active")]
    state: PoolState,
}

impl Record {
    /// The record as bytes: a format byte, then JSON for objects and owner indexes, a
    /// bitmap and its holders for blocks (see [`BlockRecord::to_bytes`]), and fixed-width
    /// integers for cursors and summaries.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![RECORD_FORMAT];
        let json = |out: &mut Vec<u8>, v: &dyn erased::Json| v.write(out);
        match self {
            Record::Pool(p) => json(
                &mut out,
                &NamedSpec {
                    name: p.name().to_string(),
                    spec: p.spec().clone(),
                    state: p.state(),
                },
            ),
            Record::ReservedIp(r) => json(
                &mut out,
                &NamedSpec {
                    name: r.name().to_string(),
                    spec: r.spec().clone(),
                    state: PoolState::Active,
                },
            ),
            Record::Owner(held) => json(&mut out, held),
            Record::Cursor(c) => out.extend_from_slice(&c.to_be_bytes()),
            Record::PoolRanges(PoolRanges(pools)) => {
                out.extend_from_slice(&(pools.len() as u64).to_be_bytes());
                for (name, (family, ips)) in pools {
                    out.extend_from_slice(&(name.as_str().len() as u16).to_be_bytes());
                    out.extend_from_slice(name.as_str().as_bytes());
                    out.push(family.version());
                    encode_intervals(&mut out, ips);
                }
            }
            Record::Invalid(r) => unreachable!("an invalid record is never written: {}", r.object),
            Record::Block(b) => out.extend_from_slice(&b.to_bytes()),
            Record::ReservedSummary(sets) => {
                for set in [&sets.v4, &sets.v6] {
                    encode_intervals(&mut out, set);
                }
            }
        }
        out
    }

    /// Reads [`Record::encode`] output stored under `key`. Never panics on foreign bytes.
    pub fn decode(key: &Key, bytes: &[u8]) -> Result<Record, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt {
            key: key.to_string(),
            reason,
        };
        let (&format, body) = bytes
            .split_first()
            .ok_or_else(|| corrupt("empty record".into()))?;
        if format != RECORD_FORMAT {
            return Err(corrupt(format!("unknown record format {format}")));
        }
        let json_err = |e: serde_json::Error| corrupt(e.to_string());
        Ok(match key {
            Key::Pool(_) => {
                let n: NamedSpec<IpPoolSpec> = serde_json::from_slice(body).map_err(json_err)?;
                Record::Pool(
                    IpPool::new(&n.name, n.spec)
                        .map_err(|e| corrupt(e.to_string()))?
                        .with_state(n.state),
                )
            }
            Key::ReservedIp(_) => {
                let n: NamedSpec<ReservedIpSpec> =
                    serde_json::from_slice(body).map_err(json_err)?;
                Record::ReservedIp(
                    ReservedIp::new(&n.name, n.spec).map_err(|e| corrupt(e.to_string()))?,
                )
            }
            Key::Owner(_) => Record::Owner(serde_json::from_slice(body).map_err(json_err)?),
            Key::Cursor { .. } => Record::Cursor(u128::from_be_bytes(
                body.try_into()
                    .map_err(|_| corrupt("cursor is not 16 bytes".into()))?,
            )),
            Key::Block { family, index } => {
                Record::Block(BlockRecord::from_bytes(*family, *index, body).map_err(corrupt)?)
            }
            Key::ReservedSummary => Record::ReservedSummary(decode_summary(body).map_err(corrupt)?),
            Key::PoolGuard => Record::PoolRanges(decode_pool_ranges(body).map_err(corrupt)?),
        })
    }
}

fn encode_intervals(out: &mut Vec<u8>, set: &IntervalSet) {
    out.extend_from_slice(&(set.intervals().len() as u64).to_be_bytes());
    for &(a, b) in set.intervals() {
        out.extend_from_slice(&a.to_be_bytes());
        out.extend_from_slice(&b.to_be_bytes());
    }
}

/// Reads what [`encode_intervals`] wrote at the start of `bytes`; the rest after it.
fn decode_intervals(bytes: &[u8]) -> Result<(IntervalSet, &[u8]), String> {
    let (n, rest) = take_u64(bytes).ok_or("truncated")?;
    let n = usize::try_from(n).map_err(|_| "bad length")?;
    if rest.len() / 32 < n {
        return Err("truncated".into());
    }
    let v = rest[..n * 32]
        .chunks_exact(32)
        .map(|chunk| {
            let a = u128::from_be_bytes(chunk[..16].try_into().expect("16 bytes"));
            let b = u128::from_be_bytes(chunk[16..].try_into().expect("16 bytes"));
            (a, b)
        })
        .collect::<Vec<_>>();
    let set = IntervalSet::try_from(v).map_err(|e| e.to_string())?;
    Ok((set, &rest[n * 32..]))
}

fn decode_summary(body: &[u8]) -> Result<FamilySets, String> {
    let (v4, rest) = decode_intervals(body)?;
    let (v6, rest) = decode_intervals(rest)?;
    if !rest.is_empty() {
        return Err("trailing bytes".into());
    }
    Ok(FamilySets { v4, v6 })
}

fn decode_pool_ranges(body: &[u8]) -> Result<PoolRanges, String> {
    let (n, mut rest) = take_u64(body).ok_or("truncated")?;
    let mut pools = std::collections::BTreeMap::new();
    for _ in 0..n {
        let (len, tail) = rest.split_at_checked(2).ok_or("truncated")?;
        let len = usize::from(u16::from_be_bytes(len.try_into().expect("2 bytes")));
        let (name, tail) = tail.split_at_checked(len).ok_or("truncated")?;
        let name = std::str::from_utf8(name).map_err(|_| "a name is not UTF-8")?;
        let name = ObjectName::new(name).map_err(|e| e.to_string())?;
        let (&version, tail) = tail.split_first().ok_or("truncated")?;
        let family = Family::from_version(version).ok_or("bad family")?;
        let (ips, tail) = decode_intervals(tail)?;
        pools.insert(name, (family, ips));
        rest = tail;
    }
    if !rest.is_empty() {
        return Err("trailing bytes".into());
    }
    Ok(PoolRanges(pools))
}

fn take_u64(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let (head, tail) = bytes.split_at_checked(8)?;
    Some((u64::from_be_bytes(head.try_into().ok()?), tail))
}

/// Object-safe JSON writing, so `Record::encode` can treat its JSON bodies alike.
mod erased {
    pub trait Json {
        fn write(&self, out: &mut Vec<u8>);
    }
    impl<T: serde::Serialize> Json for T {
        fn write(&self, out: &mut Vec<u8>) {
            serde_json::to_writer(out, self).expect("records serialize to JSON");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::holder::{Held, Holder, PodRef};
    use crate::search::BLOCK_BITS;

    fn name(s: &str) -> ObjectName {
        ObjectName::new(s).unwrap()
    }

    #[test]
    fn keys_round_trip_and_sort_within_their_range() {
        let v4_block = |a: u32| Key::Block {
            family: Family::V4,
            index: u128::from(a) >> BLOCK_BITS,
        };
        let keys = [
            Key::Pool(name("a")),
            Key::ReservedIp(name("r-1")),
            Key::ReservedSummary,
            v4_block(0x0a06_0000),
            Key::Block {
                family: Family::V6,
                index: u128::MAX >> BLOCK_BITS,
            },
            Key::Cursor {
                pool: name("a"),
                node: None,
            },
            Key::Cursor {
                pool: name("a"),
                node: Some(name("node-1")),
            },
            Key::Owner(Owner::new("c1", "eth0").unwrap()),
            Key::PoolGuard,
        ];
        for key in &keys {
            assert_eq!(&Key::decode(&key.encode()).unwrap(), key);
        }
        let in_range = |range: &KeyRange, key: &Key| {
            let (start, end) = range.bounds();
            let bytes = key.encode();
            let by_bytes = start <= bytes && bytes < end;
            assert_eq!(by_bytes, range.contains(key), "{range:?} {key}");
            by_bytes
        };
        let slash16 = KeyRange::blocks_covering(Family::V4, 0x0a06_0000, 0x0a06_ffff);
        assert!(in_range(&slash16, &v4_block(0x0a06_0000)));
        assert!(in_range(&slash16, &v4_block(0x0a06_ffff)));
        assert!(!in_range(&slash16, &v4_block(0x0a07_0000)));
        assert!(!in_range(&slash16, &v4_block(0x0a05_ffff)));
        assert!(!in_range(&KeyRange::all_blocks(Family::V4), &keys[4]));
        assert!(in_range(&KeyRange::all_blocks(Family::V6), &keys[4]));
        for key in &keys {
            in_range(&KeyRange::Pools, key);
            in_range(&KeyRange::Owners, key);
            in_range(&KeyRange::Cursors, key);
            in_range(&KeyRange::all_blocks(Family::V6), key);
        }
        for bad in [&b""[..], b"x", b"pbad/name", b"B\x04", b"B\x05", b"i"] {
            assert!(Key::decode(bad).is_err(), "{bad:?}");
        }
        let mut too_high = vec![TAG_BLOCK, 4];
        too_high.extend_from_slice(&(1u128 << 32).to_be_bytes());
        assert!(Key::decode(&too_high).is_err());
    }

    #[test]
    fn records_round_trip_and_refuse_foreign_bytes() {
        let pool = IpPool::new(
            "p",
            IpPoolSpec {
                subnet: "10.6.0.0/16".into(),
                ips: vec!["10.6.0.0/24".into()],
                ..Default::default()
            },
        )
        .unwrap();
        let summary = FamilySets {
            v4: IntervalSet::from_intervals([(1, 2), (5, 9)]),
            v6: IntervalSet::from_intervals([(0, u128::MAX - 1)]),
        };
        let index = 0x0a06_0007u128 >> BLOCK_BITS;
        let mut block = BlockRecord::new(Family::V4, index);
        block.insert(
            0x0a06_0007,
            Holder {
                owner: Owner::new("c1", "eth0").unwrap(),
                network: "net1".into(),
                pool: name("p"),
                pod: Some(PodRef {
                    namespace: Some("default".into()),
                    name: "web".into(),
                    uid: None,
                    statefulset: None,
                }),
                node: Some(name("node-1")),
            },
        );
        let held = vec![Held {
            network: "net1".into(),
            address: "10.6.0.7".parse().unwrap(),
        }];
        let cases = [
            (Key::Pool(name("p")), Record::Pool(pool)),
            (Key::ReservedSummary, Record::ReservedSummary(summary)),
            (
                Key::Cursor {
                    pool: name("p"),
                    node: Some(name("n1")),
                },
                Record::Cursor(0x0a06_0008),
            ),
            (
                Key::Block {
                    family: Family::V4,
                    index,
                },
                Record::Block(block),
            ),
            (
                Key::Owner(Owner::new("c1", "eth0").unwrap()),
                Record::Owner(held),
            ),
            (
                Key::PoolGuard,
                Record::PoolRanges(PoolRanges(
                    [
                        (
                            name("p"),
                            (Family::V4, IntervalSet::from_intervals([(1, 2), (5, 9)])),
                        ),
                        (
                            name("q"),
                            (Family::V6, IntervalSet::from_intervals([(0, u128::MAX)])),
                        ),
                    ]
                    .into(),
                )),
            ),
        ];
        for (key, record) in &cases {
            let bytes = record.encode();
            assert_eq!(&Record::decode(key, &bytes).unwrap(), record);
            for cut in 0..bytes.len() {
                let _ = Record::decode(key, &bytes[..cut]); // must not panic
            }
            let mut future = bytes.clone();
            future[0] = 9;
            assert!(Record::decode(key, &future)
                .unwrap_err()
                .to_string()
                .contains("unknown record format 9"));
        }
    }
}
