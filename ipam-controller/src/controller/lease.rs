//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go's: one replica holds
//! the Lease and renews it; the others watch it change, and take it over by a
//! compare-and-swap (a replace on its `resourceVersion`) once it has not changed for its
//! duration.
//!
//! Expiry is judged by when this process saw the Lease last change, never by the times
//! written in it, so clocks that disagree between nodes do not matter.
//!
//! Safety never rests on the Lease: every release is a compare-and-swap on its block, and
//! two controllers releasing the same leak release it once. The Lease keeps one replica
//! doing the work, and the other ready.

use std::time::{Duration, Instant};

use ipam_core::StoreError;
use ipam_kube::KubeStore;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};

/// One replica's part in the election.
#[derive(Debug)]
pub struct Elector {
    namespace: String,
    name: String,
    identity: String,
    duration: Duration,
    /// The Lease's `resourceVersion` when it last changed, and when this process saw it.
    observed: Option<(String, Instant)>,
}

/// What a step found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// This replica holds the Lease, from this step's write for its duration.
    Leader,
    /// Another holds it (its identity, where the Lease names one).
    Follower(Option<String>),
}

impl Elector {
    /// The elector of the Lease `namespace/name` for the replica `identity`, holding it for
    /// `duration` from each renewal.
    pub fn new(namespace: &str, name: &str, identity: &str, duration: Duration) -> Elector {
        Elector {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            identity: identity.to_owned(),
            duration,
            observed: None,
        }
    }

    /// How long a Lease is held from a renewal.
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// Reads the Lease and acquires, renews or waits: one round trip, two when it writes.
    pub async fn step(&mut self, store: &KubeStore) -> Result<Role, StoreError> {
        let lease = self.get(store).await?;
        let Some(mut lease) = lease else {
            return self.create(store).await;
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let version = lease.metadata.resource_version.clone().unwrap_or_default();
        let now = Instant::now();
        let mine = holder.as_deref() == Some(self.identity.as_str());
        if !mine {
            let changed = self.observed.as_ref().is_none_or(|(v, _)| *v != version);
            if changed {
                self.observed = Some((version, now));
            }
            let quiet = self
                .observed
                .as_ref()
                .map_or(Duration::ZERO, |(_, at)| now - *at);
            let held_for = spec
                .lease_duration_seconds
                .map_or(self.duration, |s| Duration::from_secs(s.max(1) as u64));
            // A Lease released by its holder (no holder) is free at once; a held one when it
            // has not changed for its duration.
            if holder.is_some() && quiet < held_for {
                return Ok(Role::Follower(holder));
            }
        }
        let stamp = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let mut next = spec;
        if !mine {
            next.acquire_time = Some(stamp.clone());
            next.lease_transitions = Some(next.lease_transitions.unwrap_or(0) + 1);
        }
        next.holder_identity = Some(self.identity.clone());
        next.lease_duration_seconds = Some(self.duration.as_secs() as i32);
        next.renew_time = Some(stamp);
        lease.spec = Some(next);
        self.replace(store, lease, holder).await
    }

    /// Gives the Lease up (on shutdown), so that the other replica takes over at once. Only
    /// a Lease this replica holds is changed (a replace on the version it read).
    pub async fn release(&mut self, store: &KubeStore) -> Result<(), StoreError> {
        let Some(mut lease) = self.get(store).await? else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        self.replace(store, lease, None).await.map(|_| ())
    }

    async fn get(&self, store: &KubeStore) -> Result<Option<Lease>, StoreError> {
        let (api, name) = (self.api(), self.name.clone());
        store
            .send("get lease", self.object(), move |client| {
                let api = api(client);
                async move { api.get_opt(&name).await }
            })
            .await
    }

    async fn create(&mut self, store: &KubeStore) -> Result<Role, StoreError> {
        let stamp = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.identity.clone()),
                lease_duration_seconds: Some(self.duration.as_secs() as i32),
                acquire_time: Some(stamp.clone()),
                renew_time: Some(stamp),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        let api = self.api();
        let created = store
            .send("create lease", self.object(), move |client| {
                let api = api(client);
                async move { api.create(&PostParams::default(), &lease).await }
            })
            .await;
        match created {
            Ok(_) => Ok(Role::Leader),
            // Another replica created it first.
            Err(StoreError::Conflict { .. }) => Ok(Role::Follower(None)),
            Err(e) => Err(e),
        }
    }

    /// Replaces the Lease on the version it was read at.
    async fn replace(
        &mut self,
        store: &KubeStore,
        lease: Lease,
        holder: Option<String>,
    ) -> Result<Role, StoreError> {
        let (api, name) = (self.api(), self.name.clone());
        let replaced = store
            .send("update lease", self.object(), move |client| {
                let api = api(client);
                async move { api.replace(&name, &PostParams::default(), &lease).await }
            })
            .await;
        match replaced {
            Ok(l) => {
                let version = l.metadata.resource_version.unwrap_or_default();
                self.observed = Some((version, Instant::now()));
                let holder = l.spec.and_then(|s| s.holder_identity);
                Ok(if holder.as_deref() == Some(self.identity.as_str()) {
                    Role::Leader
                } else {
                    Role::Follower(holder)
                })
            }
            // Changed since it was read: another replica renewed or took it.
            Err(StoreError::Conflict { .. }) => Ok(Role::Follower(holder)),
            Err(e) => Err(e),
        }
    }

    /// The Lease's Api, made on the client the store lends.
    fn api(&self) -> impl FnOnce(kube::Client) -> Api<Lease> + Send + 'static {
        let namespace = self.namespace.clone();
        move |client| Api::namespaced(client, &namespace)
    }

    /// The Lease as messages name it.
    fn object(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}
