//! Decoding stored keys and records from arbitrary bytes never panics, and what decodes
//! re-encodes to bytes that decode to the same value.
#![no_main]

use ipam_core::store::{Key, Record};
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
        Key::Block { pool: name("p"), index: 0xa06 },
        Key::Cursor(name("p")),
        Key::Allocation { pool: name("p"), address: "10.6.0.1".parse().unwrap() },
        Key::Owner(owner("c")),
    ];
    for key in &keys {
        if let Ok(record) = Record::decode(key, data) {
            let again = Record::decode(key, &record.encode()).expect("re-encoded record decodes");
            assert_eq!(again, record);
        }
    }
});
