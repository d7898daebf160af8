//! Decoding stored keys and records from arbitrary bytes never panics, and what decodes
//! re-encodes to bytes that decode to the same value; migrating arbitrary schema 1 records
//! never panics.
#![no_main]

use ipam_core::backend::{Key, Record};
use ipam_core::Family;
use ipam_core::testkit::{name, owner};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(key) = Key::decode(data) {
        assert_eq!(Key::decode(&key.encode()).unwrap(), key);
    }
    let keys = [
        Key::Pool(name("p")),
        Key::ReservedIp(name("r")),
        Key::ReservedSummary,
        Key::Block { family: Family::V4, index: 0x0a06_0000 >> ipam_core::backend::BLOCK_BITS },
        Key::Block { family: Family::V6, index: u128::MAX >> ipam_core::backend::BLOCK_BITS },
        Key::Cursor { pool: name("p"), node: None },
        Key::Cursor { pool: name("p"), node: Some(name("node-1")) },
        Key::Owner(owner("c")),
    ];
    for key in &keys {
        if let Ok(record) = Record::decode(key, data) {
            let again = Record::decode(key, &record.encode()).expect("re-encoded record decodes");
            assert_eq!(again, record);
        }
    }
    let cut = data.first().map_or(0, |&n| usize::from(n).min(data.len()));
    let _ = ipam_core::backend::migrate::from_v1(vec![(data[..cut].to_vec(), data[cut..].to_vec())]);
});
