//! The commands of `ipamctl`, as functions over an [`Ipam`] engine on any store, writing to
//! the given output and error streams. The binary picks the store and the streams; tests use
//! a [`MemoryStore`](ipam_core::MemoryStore) and buffers.

use std::io::Write;
use std::net::IpAddr;

use ipam_core::backend::KeyRange;
use ipam_core::{Allocation, Applied, Error, Family, Ipam, ObjectName, PoolCounts, Store};
use ipam_store::{CountsBoard, PodDirectory};

use crate::error::CtlError;
use crate::manifest::{Manifest, Object};
use crate::output::{self, AllocationOut, AllocationsOut, Format, ListOut};

/// The resource types of `get` and `delete`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    /// IPPools.
    Pools,
    /// ReservedIPs.
    ReservedIps,
    /// Allocations.
    Allocations,
}

impl Resource {
    /// Reads a resource type as kubectl would: singular or plural, any case, and
    /// Spiderpool's names and short names (`sp`, `sr`) too.
    pub fn parse(text: &str) -> Result<Resource, CtlError> {
        match text.to_ascii_lowercase().as_str() {
            "ippool" | "ippools" | "spiderippool" | "spiderippools" | "sp" => Ok(Resource::Pools),
            "reservedip" | "reservedips" | "spiderreservedip" | "spiderreservedips" | "sr" => {
                Ok(Resource::ReservedIps)
            }
            "allocation" | "allocations" => Ok(Resource::Allocations),
            _ => Err(CtlError::Usage(format!(
                "unknown resource type {text:?}; use ippools, reservedips or allocations"
            ))),
        }
    }

    /// The singular name, as in `ippool/NAME` and `ippool "NAME" not found`.
    pub fn singular(self) -> &'static str {
        match self {
            Resource::Pools => "ippool",
            Resource::ReservedIps => "reservedip",
            Resource::Allocations => "allocation",
        }
    }
}

/// `apply`: creates or updates every object of already validated `manifests`, printing
/// `ippool/NAME created|configured|unchanged` per object; then
/// refreshes on `board` the counts of the pools the input changed (of every pool when it
/// changed a ReservedIP, which may count in any pool).
///
/// ReservedIPs are applied before pools, whatever their order in the input: a pool that
/// appears together with the reservation meant for it is never visible to an allocation
/// without that reservation.
pub async fn apply<S: Store>(
    ipam: &Ipam<S>,
    manifests: &[Manifest],
    board: Option<&dyn CountsBoard>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), CtlError> {
    // ReservedIPs first, so a pool printed as applied already honours them; all in one
    // transaction, so a store failure leaves nothing half-applied.
    let (mut reserved, mut pools) = (Vec::new(), Vec::new());
    let (mut reserved_names, mut pool_names) = (Vec::new(), Vec::new());
    for m in manifests {
        match &m.object {
            Object::Reserved(r) => {
                reserved.push(r.clone());
                reserved_names.push(&m.object);
            }
            Object::Pool(p) => {
                pools.push(p.clone());
                pool_names.push(&m.object);
            }
        }
    }
    let objects: Vec<&Object> = reserved_names.into_iter().chain(pool_names).collect();
    // A store of single objects (Kubernetes) has no transaction over several: what was
    // there before is what a failure part-way is told against.
    let before = specs(ipam, &objects).await?;
    let applied = match ipam.apply_all(&reserved, &pools).await {
        Ok(applied) => applied,
        Err(e @ (Error::Store(_) | Error::TryAgainLater { .. })) => {
            let found = specs(ipam, &objects)
                .await
                .map(|after| applied_before_failure(&objects, &before, &after))
                .map_err(|read| read.to_string());
            return Err(CtlError::Apply {
                source: e,
                applied: found,
            });
        }
        Err(e) => return Err(e.into()),
    };
    for (object, applied) in objects.iter().zip(&applied) {
        writeln!(out, "{object} {applied}")?;
    }
    if let Some(board) = board {
        let reservation_changed = objects
            .iter()
            .zip(&applied)
            .any(|(o, a)| matches!(o, Object::Reserved(_)) && *a != Applied::Unchanged);
        let refreshed = async {
            let pools = if reservation_changed {
                ipam.pools().await?
            } else {
                pools
            };
            ipam.pools_counts(&pools).await
        };
        match refreshed.await {
            Ok(counts) => publish(board, &counts, err)?,
            Err(e) => not_refreshed(&e, err)?,
        }
    }
    Ok(())
}

/// The spec each of `objects` has in the store now, as the input's type (`None`: absent).
async fn specs<S: Store>(
    ipam: &Ipam<S>,
    objects: &[&Object],
) -> Result<Vec<Option<Object>>, Error> {
    let wants = |f: fn(&Object) -> bool| objects.iter().any(|o| f(o));
    let pools = if wants(|o| matches!(o, Object::Pool(_))) {
        ipam.pools().await?
    } else {
        Vec::new()
    };
    let reserved = if wants(|o| matches!(o, Object::Reserved(_))) {
        ipam.reserved_ips().await?
    } else {
        Vec::new()
    };
    Ok(objects
        .iter()
        .map(|o| match o {
            Object::Pool(p) => pools
                .iter()
                .find(|s| s.name() == p.name())
                .cloned()
                .map(Object::Pool),
            Object::Reserved(r) => reserved
                .iter()
                .find(|s| s.name() == r.name())
                .cloned()
                .map(Object::Reserved),
        })
        .collect())
}

/// The objects of the input that the store holds as written now but did not before.
fn applied_before_failure(
    objects: &[&Object],
    before: &[Option<Object>],
    after: &[Option<Object>],
) -> Vec<String> {
    let same = |a: &Option<Object>, o: &Object| match (a, o) {
        (Some(Object::Pool(a)), Object::Pool(o)) => a.spec() == o.spec(),
        (Some(Object::Reserved(a)), Object::Reserved(o)) => a.spec() == o.spec(),
        _ => false,
    };
    objects
        .iter()
        .zip(before.iter().zip(after))
        .filter(|(o, (b, a))| same(a, o) && !same(b, o))
        .map(|(o, (b, _))| {
            let how = if b.is_none() { "created" } else { "configured" };
            format!("{o} {how}")
        })
        .collect()
}

/// Options of `get`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GetOptions {
    /// One object by name (for allocations: an address).
    pub name: Option<String>,
    /// For allocations: only those of this pool.
    pub pool: Option<String>,
    /// The output format.
    pub format: Format,
}

/// `get`: prints pools, ReservedIPs or allocations. The pools' counts it printed are then
/// refreshed on `board` (those of the named pool only, when one is named).
///
/// A missing named object is [`CtlError::NotFound`]; an empty list prints
/// `No resources found` on `err` (tables) or an empty list (JSON, YAML), as kubectl does.
pub async fn get<S: Store>(
    ipam: &Ipam<S>,
    resource: Resource,
    options: &GetOptions,
    board: Option<&dyn CountsBoard>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), CtlError> {
    let not_found = |name: &str| CtlError::NotFound {
        kind: resource.singular(),
        name: name.to_owned(),
    };
    if options.pool.is_some() && resource != Resource::Allocations {
        return Err(CtlError::Usage(
            "--pool applies to allocations only".to_owned(),
        ));
    }
    let wide = options.format == Format::Wide;
    let mut refresh = Vec::new();
    let text = match resource {
        Resource::Pools => {
            let pools = match &options.name {
                Some(name) => {
                    let pool = match ObjectName::new(name.as_str()) {
                        Ok(n) => ipam.pool(&n).await?,
                        // No object can have an invalid name.
                        Err(_) => None,
                    };
                    vec![pool.ok_or_else(|| not_found(name))?]
                }
                None => ipam.pools().await?,
            };
            let counts = ipam.pools_counts(&pools).await?;
            refresh = counts.clone();
            let rows: Vec<_> = pools.into_iter().zip(counts).collect();
            match options.format {
                Format::Table | Format::Wide => table_text(output::pools_table(&rows, wide)),
                f => {
                    let items: Vec<_> = rows.iter().map(|(p, c)| output::pool_out(p, c)).collect();
                    render_one_or_list(items, options.name.is_some(), f)?
                }
            }
        }
        Resource::ReservedIps => {
            let mut all = ipam.reserved_ips().await?;
            if let Some(name) = &options.name {
                all.retain(|r| r.name().as_str() == name);
                if all.is_empty() {
                    // An invalid one says what is wrong with it.
                    if let Ok(n) = ObjectName::new(name.as_str()) {
                        ipam.reserved_ip(&n).await?;
                    }
                    return Err(not_found(name));
                }
            }
            match options.format {
                Format::Table | Format::Wide => table_text(output::reserved_table(&all, wide)),
                f => {
                    let items: Vec<_> = all.iter().map(output::reserved_out).collect();
                    render_one_or_list(items, options.name.is_some(), f)?
                }
            }
        }
        Resource::Allocations => {
            let pool = match &options.pool {
                None => None,
                Some(p) => {
                    let name = ObjectName::new(p.as_str()).map_err(|_| CtlError::NotFound {
                        kind: "ippool",
                        name: p.clone(),
                    })?;
                    if ipam.pool(&name).await?.is_none() {
                        return Err(CtlError::NotFound {
                            kind: "ippool",
                            name: p.clone(),
                        });
                    }
                    Some(name)
                }
            };
            let mut all: Vec<Allocation> = ipam.allocations(pool.as_ref()).await?;
            if let Some(name) = &options.name {
                let address = parse_address(name, "an allocation is named by its address")?;
                all.retain(|a| a.address == address);
                if all.is_empty() {
                    return Err(not_found(name));
                }
            }
            match options.format {
                Format::Table | Format::Wide => table_text(output::allocations_table(&all, wide)),
                f => {
                    let items = all.iter().map(AllocationOut::from).collect();
                    render(&AllocationsOut { items }, f)?
                }
            }
        }
    };
    // What is there but does not read (written with kubectl around our checks) is named,
    // with how to repair it: it is not in the listing, and it is never handed out.
    let ranges = match resource {
        Resource::Pools => vec![KeyRange::Pools],
        Resource::ReservedIps => vec![KeyRange::ReservedIps],
        Resource::Allocations => vec![
            KeyRange::all_blocks(Family::V4),
            KeyRange::all_blocks(Family::V6),
            KeyRange::Owners,
        ],
    };
    if options.name.is_none() {
        for bad in ipam.invalid_records(&ranges).await? {
            writeln!(err, "warning: {bad}")?;
        }
    }
    match text {
        Some(text) => out.write_all(text.as_bytes())?,
        None => writeln!(err, "No resources found")?,
    }
    if let Some(board) = board {
        publish(board, &refresh, err)?;
    }
    Ok(())
}

/// `gc --dry-run`: the allocations that the lifecycle rules ([`ipam_controller::leak`]) find
/// leaked on the cluster `pods` lists, and why; nothing is released.
///
/// The allocations are read before the Pods: an allocation made after the Pods were listed
/// would look like a leak of a Pod that does not exist yet, while one whose Pod goes away
/// between the two reads is one (or its DEL is on the way). None found prints
/// `No leaked allocations found` on `err` (tables) or an empty list (JSON, YAML).
pub async fn gc_dry_run<S: Store>(
    ipam: &Ipam<S>,
    pods: &dyn PodDirectory,
    format: Format,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), CtlError> {
    let allocations = ipam.allocations(None).await?;
    let cluster = pods.workloads().map_err(|e| CtlError::Engine(e.into()))?;
    let leaks = ipam_controller::leak::leaks(&allocations, &cluster);
    let text = match format {
        Format::Table | Format::Wide => {
            table_text(output::leaks_table(&leaks, format == Format::Wide))
        }
        f => {
            let items = leaks
                .iter()
                .map(|(a, why)| output::LeakOut {
                    allocation: AllocationOut::from(*a),
                    leak: why.clone(),
                    message: why.to_string(),
                })
                .collect();
            render(&output::LeaksOut { items }, f)?
        }
    };
    match text {
        Some(text) => out.write_all(text.as_bytes())?,
        None => writeln!(err, "No leaked allocations found")?,
    }
    Ok(())
}

/// A table's text, or `None` when it has no rows.
fn table_text(table: output::Table) -> Option<String> {
    (!table.is_empty()).then(|| table.render())
}

/// One object when a name was asked for, else a `List` (possibly empty).
fn render_one_or_list<T: serde::Serialize>(
    mut items: Vec<T>,
    named: bool,
    format: Format,
) -> Result<Option<String>, CtlError> {
    if named && items.len() == 1 {
        render(&items.remove(0), format)
    } else {
        render(&ListOut::new(items), format)
    }
}

fn render<T: serde::Serialize>(value: &T, format: Format) -> Result<Option<String>, CtlError> {
    output::render(value, format)
        .map(Some)
        .map_err(CtlError::Render)
}

/// `delete`: removes one pool or ReservedIP, printing `ippool/NAME deleted`.
///
/// A pool with allocations is refused unless `force`; with `force` its allocations are
/// released and listed on `err`, since their owners will not be told.
pub async fn delete<S: Store>(
    ipam: &Ipam<S>,
    resource: Resource,
    name: &str,
    force: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), CtlError> {
    let not_found = || CtlError::NotFound {
        kind: resource.singular(),
        name: name.to_owned(),
    };
    let object_name = match resource {
        Resource::Allocations => return Err(delete_allocation_refusal()),
        _ => ObjectName::new(name).map_err(|_| not_found())?,
    };
    // What a forced deletion released, block by block: said even when it stops part-way.
    let mut released: Vec<Allocation> = Vec::new();
    let result = match resource {
        Resource::Pools => ipam
            .delete_pool_with(&object_name, force, &mut |freed| {
                released.extend_from_slice(freed)
            })
            .await
            .map(|_| ()),
        _ => ipam.delete_reserved_ip(&object_name).await,
    };
    if !released.is_empty() {
        let list: Vec<String> = released
            .iter()
            .map(|a| format!("{} ({})", a.address, a.owner))
            .collect();
        writeln!(
            err,
            "warning: released {} allocation(s) of ippool/{name}: {}",
            released.len(),
            list.join(", ")
        )?;
    }
    match result {
        Ok(()) => {}
        Err(Error::NotFound { .. }) => return Err(not_found()),
        Err(Error::PoolInUse { pool, allocated }) => {
            return Err(CtlError::PoolInUse { pool, allocated })
        }
        Err(source) if !released.is_empty() => {
            return Err(CtlError::DeletionStopped {
                pool: name.to_owned(),
                source,
            })
        }
        Err(e) => return Err(e.into()),
    }
    writeln!(out, "{}/{name} deleted", resource.singular())?;
    Ok(())
}

/// Why `delete allocation` is refused.
pub(crate) fn delete_allocation_refusal() -> CtlError {
    CtlError::Usage(
        "allocations are not deleted with ipamctl: their owners release them (CNI DEL or GC); \
         delete the pool with --force to drop all of its allocations"
            .to_owned(),
    )
}

/// What `explain` says after an invalid address.
pub(crate) const EXPLAIN_CONTEXT: &str = "explain takes one address";

/// `explain`: prints every reason `address` is or is not allocatable.
pub async fn explain<S: Store>(
    ipam: &Ipam<S>,
    address: &str,
    out: &mut dyn Write,
) -> Result<(), CtlError> {
    let address = parse_address(address, EXPLAIN_CONTEXT)?;
    let explanation = ipam.explain(address).await?;
    write!(out, "{explanation}")?;
    Ok(())
}

/// Parses one address strictly (as everywhere in the project).
pub(crate) fn parse_address(text: &str, context: &str) -> Result<IpAddr, CtlError> {
    ipam_core::parse_addr(text)
        .map_err(|e| CtlError::Usage(format!("invalid address {e} ({context})")))
}

/// Writes `counts` where the store shows them to others (the IPPool objects' status, which
/// `kubectl get ippools` prints). A failure is only a warning: the command did what it was
/// asked, and the status is refreshed by the next one.
fn publish(
    board: &dyn CountsBoard,
    counts: &[PoolCounts],
    err: &mut dyn Write,
) -> Result<(), CtlError> {
    for c in counts {
        if let Err(e) = board.publish(c) {
            return not_refreshed(&e, err);
        }
    }
    Ok(())
}

fn not_refreshed(e: &dyn std::fmt::Display, err: &mut dyn Write) -> Result<(), CtlError> {
    writeln!(err, "warning: the pools' status was not refreshed: {e}")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{parse_text, Format as In};
    use ipam_core::{MemoryStore, Owner, PodRef, Request, Slot};
    use pollster::block_on;

    /// The seed document's two manifests, verbatim, as one multi-document input.
    const SEED: &str = concat!(
        include_str!("../../examples/seed/ippool.yaml"),
        "---\n",
        include_str!("../../examples/seed/reservedip.yaml")
    );

    /// Runs a command on `ipam` and returns (stdout, stderr) or the error's message.
    fn run(
        f: impl FnOnce(&mut Vec<u8>, &mut Vec<u8>) -> Result<(), CtlError>,
    ) -> Result<(String, String), String> {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        f(&mut out, &mut err).map_err(|e| e.one_line())?;
        Ok((
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        ))
    }

    fn apply_text(ipam: &Ipam<MemoryStore>, text: &str) -> Result<(String, String), String> {
        let manifests = parse_text("m.yaml", text, In::Yaml).map_err(|e| e.to_string())?;
        run(|o, e| block_on(apply(ipam, &manifests, None, o, e)))
    }

    fn get_text(
        ipam: &Ipam<MemoryStore>,
        resource: &str,
        options: GetOptions,
    ) -> Result<(String, String), String> {
        let r = Resource::parse(resource).map_err(|e| e.to_string())?;
        run(|o, e| block_on(get(ipam, r, &options, None, o, e)))
    }

    fn allocate(ipam: &Ipam<MemoryStore>, id: &str) -> Result<Vec<Allocation>, ipam_core::Error> {
        block_on(
            ipam.allocate(
                &Request::new(Owner::new(id, "eth0").unwrap(), "macvlan-net")
                    .pod(PodRef {
                        namespace: Some("default".into()),
                        name: format!("pod-{id}"),
                        uid: None,
                        statefulset: None,
                    })
                    .slot(Slot::any_of([ObjectName::new("test-ippool").unwrap()])),
            ),
        )
        .map(|granted| granted.into_iter().map(|g| g.allocation).collect())
    }

    #[test]
    fn resource_types_accept_kubectl_and_spiderpool_names() {
        for (text, expect) in [
            ("ippool", Some(Resource::Pools)),
            ("ippools", Some(Resource::Pools)),
            ("IPPools", Some(Resource::Pools)),
            ("spiderippool", Some(Resource::Pools)),
            ("sp", Some(Resource::Pools)),
            ("reservedip", Some(Resource::ReservedIps)),
            ("reservedips", Some(Resource::ReservedIps)),
            ("SpiderReservedIPs", Some(Resource::ReservedIps)),
            ("sr", Some(Resource::ReservedIps)),
            ("allocation", Some(Resource::Allocations)),
            ("allocations", Some(Resource::Allocations)),
            ("pool", None),
            ("", None),
        ] {
            assert_eq!(Resource::parse(text).ok(), expect, "{text:?}");
        }
    }

    #[test]
    fn apply_reports_created_configured_unchanged() {
        let ipam = Ipam::new(MemoryStore::new());
        // Reservations go first whatever the input order.
        assert_eq!(
            apply_text(&ipam, SEED).unwrap().0,
            "reservedip/test-reservedip created\nippool/test-ippool created\n"
        );
        assert_eq!(
            apply_text(&ipam, SEED).unwrap().0,
            "reservedip/test-reservedip unchanged\nippool/test-ippool unchanged\n"
        );
        let widened = SEED.replace("10.6.168.131-10.6.168.132", "10.6.168.131-10.6.168.133");
        assert_eq!(
            apply_text(&ipam, &widened).unwrap().0,
            "reservedip/test-reservedip configured\nippool/test-ippool unchanged\n"
        );
    }

    /// One attempt, on a store that applies a transaction's operations one by one (as
    /// Kubernetes does) or atomically.
    fn one_attempt(store: MemoryStore) -> Ipam<MemoryStore> {
        Ipam::with_config(
            store,
            ipam_core::Config {
                max_attempts: 1,
                ..ipam_core::Config::default()
            },
        )
    }

    #[test]
    fn a_store_failure_part_way_names_what_was_applied() {
        let ipam = one_attempt(MemoryStore::in_order());
        // The reservation is written, then the commit is cut short before the pool.
        ipam.store().interrupt_after(1);
        assert_eq!(
            apply_text(&ipam, SEED).unwrap_err(),
            "apply: store temporarily unavailable: commit cut short (simulated crash): interrupted \
             after 1 attempts; try again later; the store applies one object at a time, and \
             before the failure it applied reservedip/test-reservedip created; the rest of the \
             input is not applied (apply it again once the cause is fixed)"
        );
        assert_eq!(
            apply_text(&ipam, SEED).unwrap().0,
            "reservedip/test-reservedip unchanged\nippool/test-ippool created\n"
        );
    }

    #[test]
    fn a_store_failure_of_an_atomic_store_applies_nothing() {
        let ipam = one_attempt(MemoryStore::new());
        ipam.store().interrupt_after(1);
        let err = apply_text(&ipam, SEED).unwrap_err();
        assert!(
            err.ends_with("try again later; nothing was applied"),
            "{err}"
        );
        assert!(ipam.store().dump().is_empty());
    }

    #[test]
    fn an_object_too_large_for_the_store_is_refused_before_anything_is_written() {
        let ipam = one_attempt(MemoryStore::in_order().with_record_limit(1024));
        let ips: Vec<String> = (0..100).map(|i| format!("  - 10.7.0.{i}\n")).collect();
        let huge = format!(
            "apiVersion: ipam.rs/v1alpha1\nkind: ReservedIP\nmetadata: {{name: r-huge}}\nspec:\n  ips:\n{}",
            ips.concat()
        );
        let err = apply_text(&ipam, &format!("{SEED}---\n{huge}")).unwrap_err();
        assert!(
            err.starts_with("store refuses reservedip/r-huge: it would be "),
            "{err}"
        );
        assert!(
            err.ends_with(
                " bytes as stored, more than the 1024 the store takes per record (the in-memory \
                 store's configured limit); nothing was applied"
            ),
            "{err}"
        );
        assert!(ipam.store().dump().is_empty());
    }

    /// Where counts are shown to others: records which pools were published.
    #[derive(Default)]
    struct Board(std::sync::Mutex<Vec<String>>);

    impl CountsBoard for Board {
        fn publish(&self, counts: &PoolCounts) -> Result<(), ipam_core::StoreError> {
            self.0.lock().unwrap().push(counts.pool.to_string());
            Ok(())
        }
    }

    impl Board {
        fn take(&self) -> Vec<String> {
            std::mem::take(&mut self.0.lock().unwrap())
        }
    }

    /// `get ippools` counts every pool from one scan of blocks per family and refreshes the
    /// counts it printed; `get ippool NAME` counts and refreshes that pool alone; `apply`
    /// refreshes the pools it applied, or every pool when a ReservedIP changed.
    #[test]
    fn counting_reads_each_block_once_and_refreshes_what_it_counted() {
        use ipam_core::testkit::CountingStore;
        let ipam = Ipam::new(CountingStore::new(MemoryStore::new()));
        let board = Board::default();
        let apply = |text: &str| {
            let manifests = parse_text("m.yaml", text, In::Yaml).unwrap();
            run(|o, e| block_on(apply(&ipam, &manifests, Some(&board), o, e))).unwrap()
        };
        let pool = |i: u32| {
            format!(
                "apiVersion: ipam.rs/v1alpha1\nkind: IPPool\nmetadata: {{name: p{i:02}}}\n\
                 spec: {{subnet: 10.{i}.0.0/24, ips: [10.{i}.0.0/24]}}\n---\n"
            )
        };
        let twenty: String = (0..20).map(pool).collect();
        apply(&twenty);
        assert_eq!(board.take().len(), 20);
        apply(&pool(20));
        assert_eq!(board.take(), ["p20"]);
        apply(SEED);
        assert_eq!(
            board.take().len(),
            22,
            "a new ReservedIP may count in every pool"
        );
        apply(SEED);
        assert_eq!(board.take(), ["test-ippool"]);

        let get = |name: Option<&str>| {
            let options = GetOptions {
                name: name.map(str::to_owned),
                ..Default::default()
            };
            run(|o, e| block_on(get(&ipam, Resource::Pools, &options, Some(&board), o, e))).unwrap()
        };
        ipam.store().take();
        assert_eq!(get(None).0.lines().count(), 1 + 22);
        // The pools, the reservation summary, one scan of the IPv4 blocks; and the pools
        // again, for the invalid ones to warn about.
        assert_eq!(ipam.store().take(), (4, 0));
        assert_eq!(board.take().len(), 22);
        get(Some("p07"));
        assert_eq!(ipam.store().take(), (3, 0));
        assert_eq!(board.take(), ["p07"]);
    }

    #[test]
    fn get_pools_counts_per_the_contract() {
        let ipam = Ipam::new(MemoryStore::new());
        apply_text(&ipam, SEED).unwrap();
        let table =
            |ipam: &Ipam<MemoryStore>| get_text(ipam, "ippools", GetOptions::default()).unwrap().0;
        assert_eq!(
            table(&ipam),
            "NAME          VERSION   SUBNET        TOTAL   RESERVED   ALLOCATED   AVAILABLE\n\
             test-ippool   4         10.6.0.0/16   3       2          0           1\n"
        );
        assert_eq!(
            allocate(&ipam, "a").unwrap()[0].address.to_string(),
            "10.6.168.133"
        );
        assert!(
            table(&ipam).ends_with("3       2          1           0\n"),
            "{}",
            table(&ipam)
        );
        // A reservation over the held address: allocated 1, and it stays unavailable.
        let widened = SEED.replace("10.6.168.131-10.6.168.132", "10.6.168.131-10.6.168.133");
        apply_text(&ipam, &widened).unwrap();
        assert!(
            table(&ipam).ends_with("3       3          1           0\n"),
            "{}",
            table(&ipam)
        );
        run(|o, e| {
            block_on(delete(
                &ipam,
                Resource::ReservedIps,
                "test-reservedip",
                false,
                o,
                e,
            ))
        })
        .unwrap();
        assert!(
            table(&ipam).ends_with("3       0          1           2\n"),
            "{}",
            table(&ipam)
        );
    }

    #[test]
    fn get_json_and_yaml_shapes() {
        let ipam = Ipam::new(MemoryStore::new());
        apply_text(&ipam, SEED).unwrap();
        let one = |format| GetOptions {
            name: Some("test-ippool".into()),
            format,
            ..Default::default()
        };
        let json = get_text(&ipam, "ippool", one(Format::Json)).unwrap().0;
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "apiVersion": "ipam.rs/v1alpha1",
                "kind": "IPPool",
                "metadata": {"name": "test-ippool"},
                "spec": {"subnet": "10.6.0.0/16", "ips": ["10.6.168.131-10.6.168.133"]},
                "status": {"totalIPCount": 3, "reservedIPCount": 2, "allocatedIPCount": 0, "availableIPCount": 1}
            })
        );
        let yaml = get_text(&ipam, "ippool", one(Format::Yaml)).unwrap().0;
        let from_yaml: serde_json::Value = serde_yaml_ng::from_str(&yaml).unwrap();
        assert_eq!(from_yaml, v);
        assert!(
            yaml.starts_with("apiVersion: ipam.rs/v1alpha1\nkind: IPPool\n"),
            "{yaml}"
        );

        let list = get_text(
            &ipam,
            "sr",
            GetOptions {
                format: Format::Json,
                ..Default::default()
            },
        )
        .unwrap()
        .0;
        let v: serde_json::Value = serde_json::from_str(&list).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [{
                "apiVersion": "ipam.rs/v1alpha1",
                "kind": "ReservedIP",
                "metadata": {"name": "test-reservedip"},
                "spec": {"ips": ["10.6.168.131-10.6.168.132"]},
                "status": {"reservedIPCount": 2}
            }]})
        );
        // What get prints applies back unchanged.
        assert_eq!(
            apply_text(&ipam, &yaml).unwrap().0,
            "ippool/test-ippool unchanged\n"
        );
        assert_eq!(
            apply_text(&ipam, &list).unwrap().0,
            "reservedip/test-reservedip unchanged\n"
        );
    }

    /// An IPv6 /64 counts 2^64 addresses, beyond what a JSON reader holds exactly (2^53):
    /// such counts print as strings, and what `get` prints applies back unchanged.
    #[test]
    fn a_v6_64_pool_printed_by_get_applies_back() {
        let ipam = Ipam::new(MemoryStore::new());
        let v6 = "apiVersion: ipam.rs/v1alpha1\nkind: IPPool\nmetadata: {name: v6}\n\
                  spec: {subnet: 'fd00::/64', ips: ['fd00::/64']}\n";
        apply_text(&ipam, v6).unwrap();
        for format in [Format::Json, Format::Yaml] {
            for name in [Some("v6".to_owned()), None] {
                let options = GetOptions {
                    name,
                    format,
                    ..Default::default()
                };
                let text = get_text(&ipam, "ippools", options).unwrap().0;
                assert_eq!(
                    apply_text(&ipam, &text).unwrap().0,
                    "ippool/v6 unchanged\n",
                    "{text}"
                );
            }
        }
        let json = get_text(
            &ipam,
            "ippool",
            GetOptions {
                name: Some("v6".into()),
                format: Format::Json,
                ..Default::default()
            },
        )
        .unwrap()
        .0;
        // Apply ignores status, whatever it holds.
        let odd = format!(
            "{v6}status: {{totalIPCount: 340282366920938463463374607431768211456, \
             reservedIPCount: '-1', other: [1, {{x: y}}]}}\n"
        );
        assert_eq!(apply_text(&ipam, &odd).unwrap().0, "ippool/v6 unchanged\n");
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            v["status"],
            serde_json::json!({
                "totalIPCount": "18446744073709551616",
                "reservedIPCount": 0,
                "allocatedIPCount": 0,
                "availableIPCount": "18446744073709551616"
            })
        );
    }

    #[test]
    fn allocations_print_flat() {
        let ipam = Ipam::new(MemoryStore::new());
        apply_text(&ipam, SEED).unwrap();
        let json = |name: Option<&str>| {
            get_text(
                &ipam,
                "allocations",
                GetOptions {
                    name: name.map(str::to_owned),
                    format: Format::Json,
                    ..Default::default()
                },
            )
        };
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&json(None).unwrap().0).unwrap(),
            serde_json::json!({"items": []})
        );
        allocate(&ipam, "c1").unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&json(Some("10.6.168.133")).unwrap().0)
                .unwrap(),
            serde_json::json!({"items": [{
                "address": "10.6.168.133", "pool": "test-ippool", "network": "macvlan-net",
                "containerID": "c1", "ifname": "eth0", "podNamespace": "default", "podName": "pod-c1",
                "heldFor": "pod"
            }]})
        );
        assert_eq!(
            json(Some("10.6.168.131")).unwrap_err(),
            r#"allocation "10.6.168.131" not found"#
        );
        assert_eq!(
            json(Some("10.6.168.0131")).unwrap_err(),
            r#"invalid address "10.6.168.0131": IPv4 octets must not have leading zeros (an allocation is named by its address)"#
        );
        let table = get_text(&ipam, "allocation", GetOptions::default())
            .unwrap()
            .0;
        assert_eq!(
            table,
            "ADDRESS        POOL          NETWORK       CONTAINER-ID   IFNAME   POD\n\
             10.6.168.133   test-ippool   macvlan-net   c1             eth0     default/pod-c1\n"
        );
    }

    #[test]
    fn missing_and_empty() {
        let ipam = Ipam::new(MemoryStore::new());
        assert_eq!(
            get_text(&ipam, "ippools", GetOptions::default()).unwrap(),
            (String::new(), "No resources found\n".into())
        );
        let named = |n: &str| GetOptions {
            name: Some(n.into()),
            ..Default::default()
        };
        assert_eq!(
            get_text(&ipam, "ippool", named("x")).unwrap_err(),
            r#"ippool "x" not found"#
        );
        assert_eq!(
            get_text(&ipam, "reservedips", named("x")).unwrap_err(),
            r#"reservedip "x" not found"#
        );
        assert_eq!(
            get_text(&ipam, "pods", GetOptions::default()).unwrap_err(),
            r#"unknown resource type "pods"; use ippools, reservedips or allocations"#
        );
        assert_eq!(
            run(|o, e| block_on(delete(&ipam, Resource::Pools, "x", false, o, e))).unwrap_err(),
            r#"ippool "x" not found"#
        );
    }

    #[test]
    fn delete_pool_in_use_needs_force() {
        let ipam = Ipam::new(MemoryStore::new());
        apply_text(&ipam, SEED).unwrap();
        allocate(&ipam, "c1").unwrap();
        let del = |force| {
            run(|o, e| block_on(delete(&ipam, Resource::Pools, "test-ippool", force, o, e)))
        };
        assert_eq!(
            del(false).unwrap_err(),
            r#"ippool "test-ippool" has 1 allocation(s); release them (CNI DEL) first, or delete with --force to release them"#
        );
        assert!(
            block_on(ipam.pool(&ObjectName::new("test-ippool").unwrap()))
                .unwrap()
                .is_some()
        );
        assert_eq!(
            del(true).unwrap(),
            (
                "ippool/test-ippool deleted\n".into(),
                "warning: released 1 allocation(s) of ippool/test-ippool: 10.6.168.133 (c1/eth0)\n"
                    .into()
            )
        );
        assert!(
            block_on(ipam.pool(&ObjectName::new("test-ippool").unwrap()))
                .unwrap()
                .is_none()
        );
        assert!(block_on(ipam.allocations(None)).unwrap().is_empty());
    }

    #[test]
    fn explain_prints_the_engine_explanation() {
        let ipam = Ipam::new(MemoryStore::new());
        apply_text(&ipam, SEED).unwrap();
        allocate(&ipam, "c1").unwrap();
        let explain = |a: &str| run(|o, _| block_on(explain(&ipam, a, o))).map(|(o, _)| o);
        assert_eq!(
            explain("10.6.168.131").unwrap(),
            "10.6.168.131: not allocatable\n  ippool/test-ippool: listed\n  reserved by reservedip/test-reservedip\n"
        );
        assert_eq!(
            explain("10.6.168.133").unwrap(),
            "10.6.168.133: not allocatable\n  ippool/test-ippool: listed\n  held by c1/eth0 (network \"macvlan-net\", pool \"test-ippool\", pod default/pod-c1)\n"
        );
        assert_eq!(
            explain("10.6.0.7").unwrap(),
            "10.6.0.7: not allocatable\n  ippool/test-ippool: in the subnet but not in spec.ips\n"
        );
        assert_eq!(
            explain("10.6.0.0/16").unwrap_err(),
            r#"invalid address "10.6.0.0/16": expected a single address such as 10.6.0.1 (explain takes one address)"#
        );
    }
}
