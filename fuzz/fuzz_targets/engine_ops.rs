//! Arbitrary operation sequences on the engine keep its invariants: no address held twice,
//! nothing reserved or outside a pool handed out, the store's views agree.
#![no_main]

use ipam_core::backend::to_u128;
use ipam_core::testkit::{check_consistency, name, owner, pool, request, reserved};
use ipam_core::{Error, Ipam, MemoryStore, Request, Slot};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let ipam = Ipam::new(MemoryStore::new());
    let p = pool("p", "10.0.0.0/26", &["10.0.0.0/26"]);
    pollster::block_on(ipam.apply_pool(p.clone())).unwrap();
    for step in data.chunks_exact(3) {
        let (op, a, b) = (step[0] % 5, step[1], step[2]);
        let who = format!("c{}", a % 8);
        match op {
            0 => match pollster::block_on(ipam.allocate(&request(&who, &["p"]))) {
                Ok(got) => assert!(p.capacity().contains(to_u128(got[0].allocation.address))),
                Err(Error::Exhausted { .. }) => {}
                Err(e) => panic!("{e}"),
            },
            1 => {
                let address = format!("10.0.0.{}", b % 64).parse().unwrap();
                let req = Request::new(owner(&who), "net1")
                    .slot(Slot::any_of([name("p")]).requesting(address));
                match pollster::block_on(ipam.allocate(&req)) {
                    Ok(_) | Err(Error::Unavailable { .. }) => {}
                    Err(e) => panic!("{e}"),
                }
            }
            2 => {
                pollster::block_on(ipam.release(&owner(&who), None)).unwrap();
            }
            3 => {
                let first = b % 64;
                let last = first.saturating_add(a % 8).min(63);
                let r = reserved(&format!("r{}", a % 3), &[&format!("10.0.0.{first}-10.0.0.{last}")]);
                pollster::block_on(ipam.apply_reserved_ip(r)).unwrap();
            }
            _ => {
                let _ = pollster::block_on(ipam.delete_reserved_ip(&name(&format!("r{}", a % 3))));
            }
        }
        pollster::block_on(check_consistency(ipam.store()));
    }
    // Whatever the history, a fresh allocation never lands on a reserved address.
    if let Ok(got) = pollster::block_on(ipam.allocate(&request("final", &["p"]))) {
        let e = pollster::block_on(ipam.explain(got[0].allocation.address)).unwrap();
        assert!(e.reserved_by.is_empty(), "{e}");
    }
});
