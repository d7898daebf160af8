//! The address parsers never panic, and what they accept prints back to the same value.
#![no_main]

use ipam_core::{parse_addr, parse_cidr};
use ipam_core::IpRange;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(range) = IpRange::parse(text) {
        let again = IpRange::parse(&range.to_string()).expect("printed range reparses");
        assert_eq!(again, range);
        assert!(range.len() >= 1);
    }
    if let Ok(net) = parse_cidr(text) {
        assert_eq!(parse_cidr(&net.to_string()).unwrap(), net);
        assert_eq!(net.trunc(), net, "no host bits");
    }
    if let Ok(addr) = parse_addr(text) {
        assert_eq!(parse_addr(&addr.to_string()).unwrap(), addr);
    }
});
