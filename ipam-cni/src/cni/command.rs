//! The commands, over any store: ADD, DEL, CHECK, GC and STATUS.
//!
//! Everything here takes an [`Ipam`] so that the same logic runs on the redb store in the
//! binary and on `MemoryStore` in tests.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipam_core::{Allocation, Error, IpPool, Ipam, ObjectKind, Owner, PodRef, Request, Store};

use super::config::{
    agent_socket, decode_stdin, log_config, prev_result_addresses, valid_attachments, version_of,
    AgentSocket,
};
use super::config::{NetConf, Plan, SlotOrigin};
use super::env::Command;
use super::env::Environment;
use super::error::{CniError, Code};
use super::log::LogConfig;
use super::result::{add_result, AddResult};
use super::version::CniVersion;

/// One validated invocation of a command that works on the store: each command holds
/// exactly its inputs, so none is looked for while it runs. (VERSION needs no store and is
/// answered before one is opened: see [`Prepared`].)
#[derive(Clone, Debug)]
pub enum Invocation {
    /// ADD.
    Add(Add),
    /// DEL.
    Del(Del),
    /// CHECK.
    Check(Check),
    /// GC.
    Gc(Gc),
    /// STATUS.
    Status(Status),
}

/// ADD's inputs: the attachment, its Pod, and the allocation plan.
#[derive(Clone, Debug)]
pub struct Add {
    /// The network and its store.
    pub net: NetConf,
    /// `(CNI_CONTAINERID, CNI_IFNAME)`.
    pub owner: Owner,
    /// The Pod from `CNI_ARGS`, recorded with the allocations.
    pub pod: Option<PodRef>,
    /// What to allocate from, requested addresses, and what goes into the result.
    pub plan: Plan,
}

/// DEL's inputs: the network and the attachment, nothing more, so that a configuration gone
/// bad since ADD cannot keep addresses held.
#[derive(Clone, Debug)]
pub struct Del {
    /// The network and its store.
    pub net: NetConf,
    /// `(CNI_CONTAINERID, CNI_IFNAME)`.
    pub owner: Owner,
}

/// CHECK's inputs (its configuration was validated as ADD's; only this is needed to check).
#[derive(Clone, Debug)]
pub struct Check {
    /// The network and its store.
    pub net: NetConf,
    /// `(CNI_CONTAINERID, CNI_IFNAME)`.
    pub owner: Owner,
    /// `prevResult`'s addresses, if it has one.
    pub prev: Option<Vec<IpAddr>>,
}

/// GC's inputs: the network and the attachments to keep.
#[derive(Clone, Debug)]
pub struct Gc {
    /// The network and its store.
    pub net: NetConf,
    /// `cni.dev/valid-attachments`.
    pub valid: BTreeSet<Owner>,
}

/// STATUS's inputs: the network and the plan whose slots must each have a free address.
#[derive(Clone, Debug)]
pub struct Status {
    /// The network and its store.
    pub net: NetConf,
    /// The slots to check.
    pub plan: Plan,
}

impl Invocation {
    /// The network and its store, which every command here has.
    pub fn net(&self) -> &NetConf {
        match self {
            Invocation::Add(Add { net, .. })
            | Invocation::Del(Del { net, .. })
            | Invocation::Check(Check { net, .. })
            | Invocation::Gc(Gc { net, .. })
            | Invocation::Status(Status { net, .. }) => net,
        }
    }

    /// The command.
    pub fn command(&self) -> Command {
        match self {
            Invocation::Add(_) => Command::Add,
            Invocation::Del(_) => Command::Del,
            Invocation::Check(_) => Command::Check,
            Invocation::Gc(_) => Command::Gc,
            Invocation::Status(_) => Command::Status,
        }
    }
}

/// A validated request: what [`Invocation::parse`] makes of the environment and stdin.
#[derive(Clone, Debug)]
pub enum Prepared {
    /// VERSION: answered without configuration or store.
    Version,
    /// Any other command.
    Run(Box<Invocation>),
}

/// A refusal before the store is opened, with the request's version when it was understood
/// (errors are written in it).
pub type Refusal = (Option<CniVersion>, CniError);

impl Invocation {
    /// Validates the environment and stdin. Errors come in the order a runtime can fix
    /// them: environment (4), JSON (6), version (1), then the configuration (6 for a wrong
    /// type, 7 for a wrong value). Also sets up logging as the configuration and environment
    /// say.
    pub fn parse(var: impl Fn(&str) -> Option<String>, stdin: &[u8]) -> Result<Prepared, Refusal> {
        Invocation::parse_decoded(var, decode_stdin(stdin))
    }

    /// [`Invocation::parse`] with stdin already decoded (or refused), so that the front door
    /// reads it once.
    pub fn parse_decoded(
        var: impl Fn(&str) -> Option<String>,
        decoded: Result<serde_json::Value, CniError>,
    ) -> Result<Prepared, Refusal> {
        let hint = decoded
            .as_ref()
            .ok()
            .and_then(|c| c.get("cniVersion"))
            .and_then(|v| v.as_str())
            .and_then(CniVersion::parse);
        let fail = |e: CniError| (hint, e);
        let env = match Environment::from_vars(&var) {
            Ok(Environment::Version) => return Ok(Prepared::Version),
            Ok(env) => env,
            Err(e) => return Err(fail(e)),
        };
        let command = env.command();
        let conf = decoded.map_err(fail)?;
        let version = version_of(&conf).map_err(fail)?;
        if !version.allows(command) {
            return Err(fail(CniError::new(
                Code::IncompatibleVersion,
                format!(
                    "{command} needs cniVersion {} or later; the configuration says {version}",
                    CniVersion::first_with(command)
                ),
            )));
        }
        let mut net = NetConf::parse(&conf, version).map_err(fail)?;
        match log_config(&conf) {
            Ok(cfg) => super::log::init(cfg.with_env(&var)),
            // Tear-down needs no logging: a log setting gone bad must not keep an address held.
            // ADD, CHECK and STATUS refuse it, so that the mistake shows when it is made.
            Err(e) if command.is_teardown() => {
                super::log::init(LogConfig::default().with_env(&var));
                ::log::warn!(
                    "{}; ignored: {command} logs with the defaults (warn, stderr) and goes on",
                    e.msg()
                );
            }
            Err(e) => return Err(fail(e)),
        }
        net.agent = match agent_socket(&conf) {
            Ok(agent) => agent,
            // As for logging: tear-down goes on, on the store itself.
            Err(e) if command.is_teardown() => {
                ::log::warn!("{}; ignored: {command} is made without an agent", e.msg());
                AgentSocket::Never
            }
            Err(e) => return Err(fail(e)),
        };
        // Each command reads what it needs; DEL and GC do not read `ranges` or `ippools`, so a
        // configuration that has gone bad since ADD cannot keep addresses from being released.
        let inv = match env {
            Environment::Add { owner, args } => Invocation::Add(Add {
                plan: Plan::parse(&conf, &net, &args).map_err(fail)?,
                pod: args.pod(),
                owner,
                net,
            }),
            Environment::Del { owner } => Invocation::Del(Del { net, owner }),
            Environment::Check { owner, args } => {
                // Validated as for ADD; checking itself needs only prevResult.
                Plan::parse(&conf, &net, &args).map_err(fail)?;
                let prev = prev_result_addresses(&conf).map_err(fail)?;
                Invocation::Check(Check { net, owner, prev })
            }
            Environment::Gc => Invocation::Gc(Gc {
                valid: valid_attachments(&conf).map_err(fail)?,
                net,
            }),
            Environment::Status { args } => Invocation::Status(Status {
                plan: Plan::parse(&conf, &net, &args).map_err(fail)?,
                net,
            }),
            Environment::Version => return Ok(Prepared::Version),
        };
        Ok(Prepared::Run(Box::new(inv)))
    }
}

/// The annotations a Pod picks its pools with: ours, then Spiderpool's, read verbatim.
pub const POD_POOL_ANNOTATIONS: [&str; 2] = ["ipam.rs/ippool", "ipam.spidernet.io/ippool"];

impl Add {
    /// Where the store knows Pods (Kubernetes): the Pod named in `CNI_ARGS` may pick the pools
    /// with an annotation, which replaces the network's `ippools`, and its UID is recorded.
    pub fn use_the_pods_choice(
        &mut self,
        pods: &dyn ipam_store::PodDirectory,
    ) -> Result<(), CniError> {
        let add = self;
        let Some(pod) = add.pod.as_mut() else {
            return Ok(());
        };
        let Some(namespace) = pod.namespace.clone() else {
            return Ok(());
        };
        let Some(details) = pods
            .pod(&namespace, &pod.name)
            .map_err(|e| CniError::from_store(&e))?
        else {
            ::log::info!(
                "Pod {namespace}/{} not found: the network's pools apply",
                pod.name
            );
            return Ok(());
        };
        if pod.uid.is_none() {
            pod.uid = details.uid;
        }
        // Recorded with the address, so that a DEL keeps it for the Pod's identity.
        if add.net.keep_statefulset_addresses {
            pod.statefulset = details.statefulset;
        }
        if let Some((key, value)) = POD_POOL_ANNOTATIONS
            .iter()
            .find_map(|k| details.annotations.get(*k).map(|v| (*k, v)))
        {
            add.plan.use_pod_pools(&add.net.name, key, value)?;
        }
        Ok(())
    }
}

impl Add {
    /// Gives back what this call took (`taken`) because the runtime will not learn it
    /// (`why`), and says so in the error that fails the call.
    pub async fn give_back<S: Store>(
        &self,
        ipam: &Ipam<S>,
        taken: &[IpAddr],
        why: &str,
    ) -> CniError {
        let what = match ipam.release_addresses(&self.owner, taken).await {
            Ok(released) => format!(
                "released what it took ({})",
                released
                    .iter()
                    .map(|a| a.address.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Err(e) => format!("and could not release what it took: {e}"),
        };
        CniError::new(Code::Io, format!("ADD {}: {why}; {what}", self.owner))
    }
}

/// What a command did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Executed {
    /// What to print on stdout (ADD); nothing for DEL, CHECK, GC, STATUS.
    pub result: Option<AddResult>,
    /// The addresses this call took (ADD; empty for a repeated ADD): what to give back if
    /// the result cannot be delivered.
    pub taken: Vec<IpAddr>,
}

impl Invocation {
    /// Runs the command against `ipam`, the engine on the store the configuration names.
    pub async fn execute<S: Store>(&self, ipam: &Ipam<S>) -> Result<Executed, CniError> {
        let nothing = |()| Executed::default();
        match self {
            Invocation::Add(a) => a.execute(ipam).await,
            Invocation::Del(d) => d.execute(ipam).await.map(nothing),
            Invocation::Check(c) => c.execute(ipam).await.map(nothing),
            Invocation::Gc(g) => g.execute(ipam).await.map(nothing),
            Invocation::Status(s) => s.execute(ipam).await.map(nothing),
        }
    }

    /// Whether a teardown (DEL, GC) finds no store at all: nothing can be held in an
    /// embedded store that was never created, and creating one just to find it empty would
    /// leave a directory behind on hosts that never ran an ADD.
    pub fn finds_no_store(&self) -> bool {
        let (command, net) = (self.command(), self.net());
        if !command.is_teardown() || !net.store.is_embedded() {
            return false;
        }
        match std::fs::symlink_metadata(&net.data_dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                log::info!(
                    "{command} on {:?}: {} does not exist; nothing to release",
                    net.name,
                    net.data_dir.display()
                );
                true
            }
            _ => false,
        }
    }
}

/// An engine refusal of a pool that `ippools` names, as the configuration field that names
/// it (code 7): the engine reads the pools itself, and checks them before it writes anything.
fn ippools_refusal(e: Error, plan: &Plan, net: &NetConf) -> CniError {
    let (name, why) = match &e {
        Error::NotFound {
            kind: ObjectKind::IpPool,
            name,
        } => (
            name.as_str(),
            format!(
                "no such ippool in {} (create it with `ipamctl apply`)",
                net.store.describe(&net.data_dir)
            ),
        ),
        Error::WrongFamily {
            pool,
            family,
            subnet,
            wanted,
        } => (
            pool.as_str(),
            format!("is an {family} pool (subnet {subnet}), listed under {wanted}"),
        ),
        Error::DefinedPoolOverlaps { defined, pool, at } => {
            // The pool is one of `ipam.ranges`: name the range set it comes from.
            let field = plan
                .slots
                .iter()
                .find(|s| s.slot.pools().iter().any(|p| p.as_str() == defined))
                .map_or("ipam.ranges", |s| s.field.as_str());
            let ips = plan
                .inline_pools
                .iter()
                .find(|p| p.name().as_str() == defined)
                .map(|p| p.spec().ips.join(","))
                .unwrap_or_default();
            return CniError::new(
                Code::InvalidConfig,
                format!(
                    "{field}: {ips:?}: overlaps ippool {pool:?} of ipam.ippools at {at}: a network's ranges must not overlap its ippools"
                ),
            );
        }
        _ => return e.into(),
    };
    let field = plan
        .slots
        .iter()
        .filter(|s| s.origin == SlotOrigin::IpPools)
        .find_map(|s| {
            let k = s.slot.pools().iter().position(|p| p.as_str() == name)?;
            Some(format!("{}[{k}]", s.field))
        });
    match field {
        Some(field) => CniError::new(Code::InvalidConfig, format!("{field}: {name:?}: {why}")),
        None => e.into(),
    }
}

/// ADD: allocate one address per slot, all or nothing. The inline pools of `ranges` are
/// defined by the request itself: the engine creates or updates the one it allocates from in
/// the same transaction, so a failed ADD leaves the store as it was.
impl Add {
    /// Runs ADD against `ipam`.
    pub async fn execute<S: Store>(&self, ipam: &Ipam<S>) -> Result<Executed, CniError> {
        let inv = self;
        let owner = &inv.owner;
        let plan = &inv.plan;
        let mut request = Request::new(owner.clone(), inv.net.name.clone())
            .reserving(plan.reserved.clone())
            .defining(plan.inline_pools.iter().cloned());
        if let Some(pod) = &inv.pod {
            request = request.pod(pod.clone());
        }
        for s in &plan.slots {
            request = request.slot(s.slot.clone());
        }
        let granted = ipam.allocate(&request).await.map_err(|e| match e {
            Error::Store(ipam_core::StoreError::TooLarge { .. }) => holder_too_large(e, inv),
            e => ippools_refusal(e, plan, &inv.net),
        })?;
        let taken = granted
            .iter()
            .filter(|g| g.fresh)
            .map(|g| g.allocation.address)
            .collect();

        let with_pools: Vec<(Allocation, IpPool)> = granted
            .into_iter()
            .map(|g| (g.allocation, g.pool))
            .collect();
        log::info!(
            "ADD {} on {:?}: {}",
            owner,
            inv.net.name,
            with_pools
                .iter()
                .map(|(a, _)| a.address.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        Ok(Executed {
            result: Some(add_result(
                inv.net.version,
                &with_pools,
                &plan.routes,
                plan.dns.as_ref(),
            )),
            taken,
        })
    }
}

/// An ADD refused because its holder would make a record larger than the store takes
/// (code 5, at once: no retry can pass). The limit is the store's, but the size comes from
/// what the runtime passed, so the message names the fields of this holder by size.
fn holder_too_large(e: Error, inv: &Add) -> CniError {
    let pod = inv.pod.as_ref();
    let mut fields: Vec<(&str, usize)> = [
        ("K8S_POD_NAME", pod.map(|p| p.name.len())),
        (
            "K8S_POD_NAMESPACE",
            pod.and_then(|p| p.namespace.as_ref()).map(String::len),
        ),
        (
            "K8S_POD_UID",
            pod.and_then(|p| p.uid.as_ref()).map(String::len),
        ),
        ("CNI_CONTAINERID", Some(inv.owner.container_id().len())),
        ("CNI_IFNAME", Some(inv.owner.ifname().len())),
        ("name", Some(inv.net.name.len())),
    ]
    .into_iter()
    .filter_map(|(field, len)| Some((field, len?)))
    .collect();
    fields.sort_by_key(|f| std::cmp::Reverse(f.1));
    // The fields longer than a Kubernetes name may be, or else the longest.
    let long = fields.iter().filter(|(_, len)| *len > 253).count().max(1);
    let listed: Vec<String> = fields
        .iter()
        .take(long)
        .map(|(field, len)| format!("{field} is {len} bytes"))
        .collect();
    let error = CniError::from(e);
    let msg = format!(
        "{}; each address's holder records the owner and Pod this ADD passes, and here {} \
         (a Kubernetes Pod name has at most 253 characters)",
        error.msg(),
        listed.join(", ")
    );
    CniError::new(error.code(), msg).with_details(error.details())
}

/// DEL: release what the owner holds on this network; nothing held is success.
impl Del {
    /// Runs DEL against `ipam`.
    pub async fn execute<S: Store>(&self, ipam: &Ipam<S>) -> Result<(), CniError> {
        let inv = self;
        let owner = &inv.owner;
        let released = ipam.release(owner, Some(&inv.net.name)).await?;
        log::info!(
            "DEL {} on {:?}: released {}",
            owner,
            inv.net.name,
            addresses(&released)
        );
        Ok(())
    }

    /// Runs DEL against `ipam` where the store knows Pods (Kubernetes): the address of a
    /// StatefulSet Pod is kept for the Pod's identity while its StatefulSet wants the Pod
    /// (it exists, is not being deleted, and the Pod's ordinal is in its range), so that the
    /// Pod's next sandbox gets it back; otherwise it is released. Without
    /// `keepStatefulSetAddresses`, as [`Del::execute`].
    ///
    /// A StatefulSet that cannot be read now keeps the address: ipam-controller releases
    /// it once it sees the StatefulSet no longer wants the Pod, and a DEL must not fail for
    /// an object that only decides how long an address waits.
    pub async fn execute_keeping<S: Store>(
        &self,
        ipam: &Ipam<S>,
        pods: &dyn ipam_store::PodDirectory,
    ) -> Result<(), CniError> {
        if !self.net.keep_statefulset_addresses {
            return self.execute(ipam).await;
        }
        let (owner, network) = (&self.owner, &self.net.name);
        let done = ipam.release_keeping(owner, Some(network)).await?;
        let mut released = done.released;
        let mut kept = Vec::new();
        let mut pools: std::collections::HashMap<ipam_core::ObjectName, bool> =
            std::collections::HashMap::new();
        for a in done.kept {
            let pod = a.pod.as_ref();
            // The pool may switch keeping off (`keepStatefulSetAddresses: false`); a pool that
            // is gone, or an inline one, keeps.
            let pool_keeps = match pools.get(&a.pool) {
                Some(k) => *k,
                None => {
                    let k = ipam
                        .pool(&a.pool)
                        .await
                        .ok()
                        .flatten()
                        .is_none_or(|p| p.keeps_statefulset_addresses());
                    pools.insert(a.pool.clone(), k);
                    k
                }
            };
            let wants = pool_keeps
                && match (
                    pod.and_then(|p| p.namespace.as_deref()),
                    pod.and_then(|p| p.statefulset.as_deref()),
                    pod.and_then(PodRef::ordinal),
                ) {
                    (Some(ns), Some(sts), Some(ordinal)) => pods
                        .statefulset_wants(ns, sts, ordinal)
                        .unwrap_or_else(|e| {
                            log::warn!(
                            "DEL {owner} on {network:?}: StatefulSet {ns}/{sts} not read ({e}); \
                             {} kept for {}",
                            a.address,
                            a.owner
                        );
                            true
                        }),
                    // A Pod whose name carries no ordinal of its StatefulSet: kept while the
                    // controller sees the StatefulSet.
                    _ => true,
                };
            if wants {
                kept.push(a);
            } else {
                released.extend(ipam.release_addresses(&a.owner, &[a.address]).await?);
            }
        }
        log::info!(
            "DEL {owner} on {network:?}: released {}; kept for the StatefulSet Pod's next sandbox: {}",
            addresses(&released),
            addresses(&kept)
        );
        Ok(())
    }
}

/// Addresses for a log line.
fn addresses(allocations: &[Allocation]) -> String {
    if allocations.is_empty() {
        return "nothing".to_owned();
    }
    allocations
        .iter()
        .map(|a| a.address.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// CHECK: the owner holds every address of `prevResult` on this network (or, without a
/// `prevResult`, any address on it: ADD is all or nothing, so one means all).
impl Check {
    /// Runs CHECK against `ipam`.
    pub async fn execute<S: Store>(&self, ipam: &Ipam<S>) -> Result<(), CniError> {
        let inv = self;
        let owner = &inv.owner;
        let held: Vec<IpAddr> = ipam
            .owner_allocations(owner)
            .await?
            .into_iter()
            .filter(|a| a.network == inv.net.name)
            .map(|a| a.address)
            .collect();
        let fail = |why: String| {
            Err(CniError::new(
                Code::CheckFailed,
                format!("CHECK {owner} on {:?}: {why}", inv.net.name),
            ))
        };
        match &inv.prev {
            Some(expected) => {
                let missing: Vec<String> = expected
                    .iter()
                    .filter(|a| !held.contains(a))
                    .map(ToString::to_string)
                    .collect();
                if !missing.is_empty() {
                    return fail(format!(
                        "prevResult lists {} but the owner holds {}",
                        missing.join(", "),
                        describe(&held)
                    ));
                }
            }
            None if held.is_empty() => {
                return fail("there is no prevResult and the owner holds no address".into());
            }
            None => {}
        }
        Ok(())
    }
}

fn describe(held: &[IpAddr]) -> String {
    if held.is_empty() {
        "none".into()
    } else {
        held.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// GC: release every allocation of this network whose owner is not a valid attachment. Goes
/// on past owners whose release fails, then reports them (what was released stays released:
/// GC is idempotent and the runtime calls it again).
impl Gc {
    /// Runs GC against `ipam`.
    pub async fn execute<S: Store>(&self, ipam: &Ipam<S>) -> Result<(), CniError> {
        let inv = self;
        let report = ipam.gc(&inv.net.name, &inv.valid).await?;
        log::info!(
            "GC {:?}: released {} allocation(s), {} failure(s)",
            inv.net.name,
            report.released.len(),
            report.failures.len()
        );
        // A record that does not read (written around our checks) is left as it is: what it
        // covers is neither released nor handed out. It does not fail the GC of everything else.
        for bad in &report.unreadable {
            log::warn!("GC {:?}: skipped {bad}", inv.net.name);
        }
        if report.failures.is_empty() {
            return Ok(());
        }
        let code = if report.failures.iter().all(|(_, e)| e.is_transient()) {
            Code::TryAgainLater
        } else {
            Code::Io
        };
        let list = report
            .failures
            .iter()
            .map(|(o, e)| format!("{o}: {e}"))
            .collect::<Vec<_>>()
            .join("; ");
        Err(CniError::new(
            code,
            format!(
                "GC {:?} released {} allocation(s) but could not release {} owner(s): {list}",
                inv.net.name,
                report.released.len(),
                report.failures.len()
            ),
        ))
    }
}

/// STATUS: every slot has a candidate pool with a free address, counting the store's
/// ReservedIPs and the network's own `reserved`. Inline pools not yet in the store count as
/// empty; pools of `ippools` must exist.
impl Status {
    /// Runs STATUS against `ipam`.
    pub async fn execute<S: Store>(&self, ipam: &Ipam<S>) -> Result<(), CniError> {
        let inv = self;
        let plan = &inv.plan;
        let not_ready = |msg: String| CniError::new(Code::NotReady, msg);
        for slot in &plan.slots {
            let mut counts = Vec::new();
            let mut ready = false;
            for name in slot.slot.pools() {
                let pool = match plan.inline_pools.iter().find(|p| p.name() == name) {
                    Some(p) => p.clone(),
                    None => match ipam.pool(name).await {
                        Ok(Some(p)) => p,
                        Ok(None) => {
                            counts.push(format!("{:?} does not exist", name.as_str()));
                            continue;
                        }
                        Err(e) => return Err(not_ready(format!("the store is not usable: {e}"))),
                    },
                };
                let free = ipam
                    .pool_counts_with(&pool, &plan.reserved)
                    .await
                    .map_err(|e| not_ready(format!("the store is not usable: {e}")))?
                    .available;
                if free > 0 {
                    ready = true;
                    break;
                }
                counts.push(format!("{:?} has no free address", name.as_str()));
            }
            if !ready {
                return Err(not_ready(format!(
                    "{} cannot yield an address: {}",
                    slot.field,
                    counts.join("; ")
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipam_core::{MemoryStore, ReservedIp, ReservedIpSpec};
    use serde_json::{json, Value};

    /// Runs one command against `ipam` as the binary would after opening the store; renders
    /// the result's addresses, "ok", or `code: msg`.
    fn cni(ipam: &Ipam<MemoryStore>, command: &str, id: &str, conf: &Value, args: &str) -> String {
        let vars = [
            ("CNI_COMMAND", command),
            ("CNI_CONTAINERID", id),
            ("CNI_IFNAME", "eth0"),
            ("CNI_ARGS", args),
        ];
        let var = |k: &str| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        };
        let inv = match Invocation::parse(var, conf.to_string().as_bytes()) {
            Ok(Prepared::Run(inv)) => inv,
            Ok(Prepared::Version) => return "version".into(),
            Err((_, e)) => return format!("{}: {}", e.code(), e.msg()),
        };
        match pollster::block_on(inv.execute(ipam)).map(|done| done.result) {
            Ok(Some(r)) => serde_json::to_value(r).unwrap()["ips"]
                .as_array()
                .unwrap()
                .iter()
                .map(|ip| ip["address"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
                .join(" "),
            Ok(None) => "ok".into(),
            Err(e) => format!("{}: {}", e.code(), e.msg()),
        }
    }

    fn conf(ipam: Value) -> Value {
        json!({"cniVersion": "1.1.0", "name": "net1", "type": "bridge", "ipam": ipam})
    }

    fn dump(ipam: &Ipam<MemoryStore>) -> String {
        let mut out = String::new();
        for (k, v) in ipam.store().dump() {
            out.push_str(&format!("{k} {v:?}\n"));
        }
        out
    }

    #[test]
    fn add_is_idempotent_and_del_releases() {
        let ipam = Ipam::new(MemoryStore::new());
        let c = conf(
            json!({"ranges": [[{"subnet": "10.6.0.0/24", "rangeStart": "10.6.0.10", "rangeEnd": "10.6.0.11"}],
                                        [{"subnet": "fd00::/120", "rangeStart": "fd00::10", "rangeEnd": "fd00::10"}]]}),
        );
        assert_eq!(cni(&ipam, "ADD", "a", &c, ""), "10.6.0.10/24 fd00::10/120");
        assert_eq!(cni(&ipam, "ADD", "a", &c, ""), "10.6.0.10/24 fd00::10/120");
        assert_eq!(
            cni(&ipam, "ADD", "b", &c, ""),
            r#"100: all IP addresses used up: pool "net1-1" (total 1, reserved 0, allocated 1, available 0)"#
        );
        assert_eq!(cni(&ipam, "CHECK", "a", &c, ""), "ok");
        assert!(cni(&ipam, "CHECK", "b", &c, "").starts_with("102: CHECK b/eth0 on \"net1\""));
        assert_eq!(cni(&ipam, "DEL", "a", &c, ""), "ok");
        assert_eq!(cni(&ipam, "DEL", "a", &c, ""), "ok");
        assert_eq!(cni(&ipam, "DEL", "never", &c, ""), "ok");
        // round-robin: the next address, not the one just released
        assert_eq!(cni(&ipam, "ADD", "b", &c, ""), "10.6.0.11/24 fd00::10/120");
    }

    #[test]
    fn a_multi_range_set_falls_through_in_order() {
        let ipam = Ipam::new(MemoryStore::new());
        let c = conf(json!({"ranges": [[
            {"subnet": "10.6.0.0/24", "rangeStart": "10.6.0.10", "rangeEnd": "10.6.0.10"},
            {"subnet": "10.7.0.0/24", "rangeStart": "10.7.0.10", "rangeEnd": "10.7.0.10", "gateway": "10.7.0.254"}
        ]]}));
        assert_eq!(cni(&ipam, "ADD", "a", &c, ""), "10.6.0.10/24");
        assert_eq!(cni(&ipam, "ADD", "b", &c, ""), "10.7.0.10/24");
        assert_eq!(
            cni(&ipam, "ADD", "c", &c, ""),
            "100: all IP addresses used up: \
             pool \"net1-0-0\" (total 1, reserved 0, allocated 1, available 0); \
             pool \"net1-0-1\" (total 1, reserved 0, allocated 1, available 0)"
        );
        // A requested address goes to the range that contains it.
        assert_eq!(cni(&ipam, "DEL", "b", &c, ""), "ok");
        assert_eq!(cni(&ipam, "ADD", "c", &c, "IP=10.7.0.10"), "10.7.0.10/24");
    }

    #[test]
    fn failed_add_leaves_the_store_as_it_was() {
        let ipam = Ipam::new(MemoryStore::new());
        let before = dump(&ipam);
        let c = conf(
            json!({"ranges": [[{"subnet": "10.6.0.0/24"}]], "ippools": {"ipv4": ["missing"]}}),
        );
        assert_eq!(
            cni(&ipam, "ADD", "a", &c, ""),
            r#"7: ipam.ippools.ipv4[0]: "missing": no such ippool in the store at /var/lib/cni/ipam-cni (create it with `ipamctl apply`)"#
        );
        let c = conf(json!({"ranges": [[{"subnet": "10.6.0.0/24"}]]}));
        assert_eq!(
            cni(&ipam, "ADD", "a", &c, "IP=10.6.0.1"),
            r#"101: requested address 10.6.0.1 is not available: pool "net1-0" keeps it out (spec.gateway)"#
        );
        assert_eq!(dump(&ipam), before, "a failed ADD creates no inline pool");
        assert_eq!(cni(&ipam, "ADD", "a", &c, "IP=10.6.0.7"), "10.6.0.7/24");
        let held = dump(&ipam);
        // a changed range that cannot serve the request: the old pool spec stays
        let narrowed = conf(
            json!({"ranges": [[{"subnet": "10.6.0.0/24", "rangeStart": "10.6.0.20", "rangeEnd": "10.6.0.20"}]]}),
        );
        assert!(cni(&ipam, "ADD", "b", &narrowed, "IP=10.6.0.9").starts_with("101: "));
        assert_eq!(dump(&ipam), held);
    }

    #[test]
    fn reservations_are_honoured_and_named() {
        let ipam = Ipam::new(MemoryStore::new());
        pollster::block_on(
            ipam.apply_reserved_ip(
                ReservedIp::new(
                    "test-reservedip",
                    ReservedIpSpec {
                        ips: vec!["10.6.168.131-10.6.168.132".into()],
                        ip_version: None,
                    },
                )
                .unwrap(),
            ),
        )
        .unwrap();
        let c = conf(
            json!({"ranges": [[{"subnet": "10.6.0.0/16", "rangeStart": "10.6.168.131",
                                         "rangeEnd": "10.6.168.134"}]],
                            "reserved": ["10.6.168.134"]}),
        );
        assert_eq!(
            cni(&ipam, "ADD", "a", &c, "IP=10.6.168.131"),
            r#"101: requested address 10.6.168.131 is not available: it is reserved by ReservedIP "test-reservedip""#
        );
        assert_eq!(
            cni(&ipam, "ADD", "a", &c, "IP=10.6.168.134"),
            "101: requested address 10.6.168.134 is not available: it is reserved by the network configuration"
        );
        assert_eq!(cni(&ipam, "STATUS", "", &c, ""), "ok");
        assert_eq!(cni(&ipam, "ADD", "a", &c, ""), "10.6.168.133/16");
        assert_eq!(
            cni(&ipam, "ADD", "b", &c, ""),
            r#"100: all IP addresses used up: pool "net1-0" (total 4, reserved 3 (2 by ReservedIPs, 1 by the network's `reserved`), allocated 1, available 0)"#
        );
        assert_eq!(
            cni(&ipam, "STATUS", "", &c, ""),
            r#"50: ipam.ranges[0] cannot yield an address: "net1-0" has no free address"#
        );
    }

    #[test]
    fn gc_releases_only_stale_owners_of_this_network() {
        let ipam = Ipam::new(MemoryStore::new());
        let c1 = conf(json!({"ranges": [[{"subnet": "10.6.0.0/24"}]]}));
        let mut c2 = conf(json!({"ranges": [[{"subnet": "10.7.0.0/24"}]]}));
        c2["name"] = json!("net2");
        for id in ["keep", "stale"] {
            assert!(cni(&ipam, "ADD", id, &c1, "").ends_with("/24"));
            assert!(cni(&ipam, "ADD", id, &c2, "").ends_with("/24"));
        }
        let mut gc = c1.clone();
        gc["cni.dev/valid-attachments"] = json!([{"containerID": "keep", "ifname": "eth0"}]);
        assert_eq!(cni(&ipam, "GC", "", &gc, ""), "ok");
        let holders: Vec<String> = pollster::block_on(ipam.allocations(None))
            .unwrap()
            .iter()
            .map(|a| format!("{}@{}", a.owner, a.network))
            .collect();
        assert_eq!(
            holders,
            ["keep/eth0@net1", "keep/eth0@net2", "stale/eth0@net2"]
        );
        let mut no_list = c1.clone();
        no_list["cniVersion"] = json!("1.1.0");
        assert!(cni(&ipam, "GC", "", &no_list, "")
            .starts_with("7: cni.dev/valid-attachments: is required"));
    }

    #[test]
    fn results_use_store_pools_for_ippools() {
        let ipam = Ipam::new(MemoryStore::new());
        pollster::block_on(
            ipam.apply_pool(
                IpPool::new(
                    "test-ippool",
                    ipam_core::IpPoolSpec {
                        subnet: "10.6.0.0/16".into(),
                        ips: vec!["10.6.168.131-10.6.168.133".into()],
                        gateway: Some("10.6.0.1".into()),
                        ..Default::default()
                    },
                )
                .unwrap(),
            ),
        )
        .unwrap();
        let c = conf(json!({"ippools": {"ipv4": ["test-ippool"]}}));
        assert_eq!(cni(&ipam, "ADD", "a", &c, ""), "10.6.168.131/16");
        let c6 = conf(json!({"ippools": {"ipv6": ["test-ippool"]}}));
        assert_eq!(
            cni(&ipam, "ADD", "b", &c6, ""),
            r#"7: ipam.ippools.ipv6[0]: "test-ippool": is an IPv4 pool (subnet 10.6.0.0/16), listed under IPv6"#
        );
        let mut old = c.clone();
        old["cniVersion"] = json!("0.3.1");
        assert_eq!(
            cni(&ipam, "CHECK", "a", &old, ""),
            "1: CHECK needs cniVersion 0.4.0 or later; the configuration says 0.3.1"
        );
    }

    /// A store that takes records of at most 4 KiB: ADDs whose Pod names are 1,000 bytes
    /// fill a block's record long before its 64 addresses; the next ADD is refused at once,
    /// naming the field that makes its holder large, and leaves the store as it was.
    #[test]
    fn an_add_whose_holder_would_overflow_its_block_names_the_field() {
        let ipam = Ipam::new(MemoryStore::new().with_record_limit(4096));
        let c = conf(json!({"ranges": [[{"subnet": "10.6.0.0/24"}]]}));
        // Without a namespace (podman), the name is recorded as given: with one, a name
        // Kubernetes could not give is refused before the store (code 4).
        let args = |i: usize| format!("K8S_POD_NAME=p{i}-{}", "x".repeat(1000));
        let mut i = 0;
        let refused = loop {
            let got = cni(&ipam, "ADD", &format!("c{i}"), &c, &args(i));
            if !got.starts_with("10.6.0.") {
                break got;
            }
            i += 1;
            assert!(i < 64, "never refused");
        };
        assert!(i >= 2, "{i}");
        let before = dump(&ipam);
        assert!(
            refused.starts_with("5: store refuses block/10.6.0.0/26: it would be "),
            "{refused}"
        );
        assert!(
            refused.ends_with(&format!(
                "; each address's holder records the owner and Pod this ADD passes, and here \
                 K8S_POD_NAME is {} bytes (a Kubernetes Pod name has at most 253 characters)",
                1002 + i.to_string().len(),
            )),
            "{refused}"
        );
        assert_eq!(
            cni(&ipam, "ADD", &format!("c{i}"), &c, &args(i)),
            refused,
            "refused again, the same way"
        );
        assert_eq!(dump(&ipam), before, "the refused ADD changed the store");
    }
}
