//! [`KubeStore`]: the [`Store`] trait on a Kubernetes API server.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ipam_core::backend::{Expect, Key, KeyRange, Op, Record, Transaction};
use ipam_core::Versioned;
use ipam_core::{Store, StoreError};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::DynamicObject;
use kube::{Client, Config};

use crate::codec::{Codec, Kind, Place};
use crate::connection::{self, Patient, Sources, StillRefused};
use crate::PodDetails;
use ipam_api::{NodeFacts, PodFacts, PodPhase, StatefulSetFacts, Workloads};
use k8s_openapi::api::apps::v1::StatefulSet;

/// Objects per page of a list, as kubectl's chunking.
const LIST_PAGE: u32 = 500;

/// Reads a list page by page ([`LIST_PAGE`] objects a request, one snapshot through the
/// continue tokens), calling `each` on every page in order. A page that fails fails the whole
/// list: an object missing from a partial one would look deleted.
async fn each_page<K>(
    api: &Api<K>,
    params: ListParams,
    mut each: impl FnMut(kube::core::ObjectList<K>),
) -> Result<(), kube::Error>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut params = params.limit(LIST_PAGE);
    loop {
        let page = api.list(&params).await?;
        let next = page.metadata.continue_.clone().filter(|c| !c.is_empty());
        each(page);
        match next {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(()),
        }
    }
}

/// What the lifecycle rules read of a Pod, with its namespace and name (`None` for an object
/// without them, which the API server never sends).
pub fn pod_facts(pod: k8s_openapi::api::core::v1::Pod) -> Option<(String, String, PodFacts)> {
    let meta = pod.metadata;
    let facts = PodFacts {
        uid: meta.uid?,
        phase: PodPhase::of(pod.status.as_ref().and_then(|s| s.phase.as_deref())),
        node: pod.spec.and_then(|s| s.node_name),
    };
    Some((meta.namespace?, meta.name?, facts))
}

/// The StatefulSet that controls a Pod: its controller owner reference of kind
/// `StatefulSet` in the `apps` group.
fn statefulset_of(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Option<String> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|r| {
            r.controller == Some(true)
                && r.kind == "StatefulSet"
                && r.api_version.split('/').next() == Some("apps")
        })
        .map(|r| r.name.clone())
}

/// What the lifecycle rules read of a StatefulSet.
pub fn statefulset_facts(sts: &k8s_openapi::api::apps::v1::StatefulSet) -> StatefulSetFacts {
    let spec = sts.spec.as_ref();
    StatefulSetFacts {
        start: spec
            .and_then(|s| s.ordinals.as_ref())
            .and_then(|o| o.start)
            .map_or(0, |n| u32::try_from(n).unwrap_or(0)),
        replicas: spec
            .and_then(|s| s.replicas)
            .map_or(1, |n| u32::try_from(n).unwrap_or(0)),
        deleting: sts.metadata.deletion_timestamp.is_some(),
    }
}

/// What the lifecycle rules read of a Node: whether its `Ready` condition is `True`.
pub fn node_facts(node: &k8s_openapi::api::core::v1::Node) -> NodeFacts {
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    NodeFacts { ready }
}

/// How to reach the cluster, and where in it the store lives.
#[derive(Clone, Debug)]
pub struct KubeOptions {
    /// A kubeconfig file; `None`: the in-cluster service account, else `$KUBECONFIG` or
    /// `~/.kube/config` (kube's inference).
    pub kubeconfig: Option<PathBuf>,
    /// The namespace of the allocation objects (blocks, owners, cursors, the summary).
    pub namespace: String,
    /// Put before the names of the cluster-scoped objects (IPPool, ReservedIP) and set as
    /// their `ipam.rs/store` label: sets apart stores that share a cluster. Empty in
    /// production, where pools are the cluster's own.
    pub prefix: String,
    /// How long one request may take before it counts as lost (a transient failure).
    pub request_timeout: Duration,
    /// How long the store may be used, from [`KubeStore::connect`], before every request
    /// fails as busy ([`StoreError::Busy`], not retried): a bound on one CNI call however
    /// many times the engine retries against a server that accepts connections but never
    /// answers. `None`: no bound.
    pub deadline: Option<Duration>,
    /// The API the installation serves pools and reservations with: ours (`IPPool`,
    /// `ReservedIP`, the default) or Spiderpool's (`SpiderIPPool`, `SpiderReservedIP`,
    /// `deploy/spiderpool-compat/`). The allocation kinds are ours in either.
    pub api: ipam_api::Api,
    /// Keep a cache of the records read and written ([`Store::caches`]): for a process that
    /// makes many calls on one store, the node agent. Its allocations and releases then
    /// start from the cache and only what their compare-and-swaps check is trusted of it,
    /// so a stale entry costs a retry, never a duplicate. Off by default.
    pub cache: bool,
}

/// The most records a store's cache keeps ([`KubeOptions::cache`]); past it, the cache starts
/// afresh. A node agent touches its own Pods' owner indexes and blocks, the pools and their
/// cursors: far fewer.
pub const CACHE_LIMIT: usize = 20_000;

/// The annotation a compare-and-swap write sets to the resourceVersion it replaces, so that
/// every such write changes the object (and so its version), even one of unchanged content.
pub const REPLACES_ANNOTATION: &str = "ipam.rs/replaces";

/// The namespace of the allocation objects unless configured otherwise.
pub const DEFAULT_NAMESPACE: &str = "ipam-rs";

/// etcd's default request limit (`--max-request-bytes`, 1.5 MiB): an object larger than
/// this, as the API server stores it, is refused ("etcdserver: request is too large").
pub const ETCD_REQUEST_LIMIT: u64 = 1536 * 1024;

/// The largest object the store writes, in bytes of its JSON: etcd's request limit less
/// 64 KiB for what the API server adds to each object (uid, timestamps, managedFields) and
/// for the request around it. A larger record is refused before anything is written
/// ([`ipam_core::Store::record_size`]), rather than by etcd in the middle of a transaction.
pub const MAX_OBJECT_BYTES: u64 = ETCD_REQUEST_LIMIT - 64 * 1024;

impl Default for KubeOptions {
    fn default() -> KubeOptions {
        KubeOptions {
            kubeconfig: None,
            namespace: DEFAULT_NAMESPACE.to_owned(),
            prefix: String::new(),
            request_timeout: Duration::from_secs(10),
            deadline: None,
            api: ipam_api::Api::IpamRs,
            cache: false,
        }
    }
}

/// What a store has asked of the API server since it connected ([`KubeStore::requests`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ApiRequests {
    /// Requests that change nothing (GET: reads, lists, watches).
    pub reads: u64,
    /// Requests that write (POST, PUT, PATCH, DELETE).
    pub writes: u64,
    /// Writes the server refused as conflicting (409): another writer got there first.
    pub conflicts: u64,
}

/// Counts the requests of one store's client (a layer of its stack) and their conflicts.
#[derive(Debug, Default)]
struct RequestCounter {
    reads: std::sync::atomic::AtomicU64,
    writes: std::sync::atomic::AtomicU64,
    conflicts: std::sync::atomic::AtomicU64,
}

impl RequestCounter {
    fn sent(&self, method: &http::Method) {
        use std::sync::atomic::Ordering::Relaxed;
        match *method {
            http::Method::GET | http::Method::HEAD | http::Method::OPTIONS => {
                self.reads.fetch_add(1, Relaxed)
            }
            _ => self.writes.fetch_add(1, Relaxed),
        };
    }

    fn conflict(&self) {
        self.conflicts
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    fn now(&self) -> ApiRequests {
        use std::sync::atomic::Ordering::Relaxed;
        ApiRequests {
            reads: self.reads.load(Relaxed),
            writes: self.writes.load(Relaxed),
            conflicts: self.conflicts.load(Relaxed),
        }
    }
}

/// A [`Store`] on custom resources of a Kubernetes API server.
///
/// Each record is one object; its version is the object's `resourceVersion`. A transaction
/// is applied in order, each operation a compare-and-swap of one object (create for
/// `Absent`, replace with the `resourceVersion` read, delete with it as a precondition),
/// stopping at the first that conflicts: the engine orders its transactions so that this is
/// safe. Unconditioned writes of cursors (hints) go out alongside. Timeouts, lost responses,
/// 429 and 5xx answers are [`StoreError::Transient`]; 409 is [`StoreError::Conflict`].
///
/// The store runs kube's client on a runtime of its own, so callers may drive it from any
/// executor (the CNI plugin and the tests use `pollster`).
pub struct KubeStore {
    inner: Arc<Inner>,
    runtime: tokio::runtime::Runtime,
}

struct Inner {
    client: Client,
    codec: Codec,
    namespace: String,
    server: String,
    /// When requests stop being sent, and how long the bound was (for the message).
    deadline: Option<(tokio::time::Instant, Duration)>,
    /// Where the certificates come from, for the message of a TLS failure.
    sources: Sources,
    /// The requests sent, by kind.
    counter: Arc<RequestCounter>,
    /// The records last read or written, by encoded key ([`KubeOptions::cache`]).
    cache: Option<std::sync::Mutex<std::collections::HashMap<Vec<u8>, Versioned<Record>>>>,
}

impl std::fmt::Debug for KubeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeStore")
            .field("server", &self.inner.server)
            .field("namespace", &self.inner.namespace)
            .field("prefix", &self.inner.codec.prefix)
            .finish()
    }
}

/// kube's default client stack (TLS, timeouts, the server's address, credentials), with
/// TCP_NODELAY set on every connection.
///
/// Without it, the first request on a new TLS connection waits for the server's delayed ACK
/// of the handshake's last segment (Nagle's algorithm): 40 ms here, on every connection a
/// CNI process opens, which was most of a one-shot ADD against a local API server.
///
/// Refused connections are retried until `until` ([`Patient`]): a server that restarts is
/// waited for.
///
/// A kubeconfig with a `proxy-url` gets kube's own stack, which knows proxies.
fn client(
    config: &Config,
    until: Option<tokio::time::Instant>,
    counter: Arc<RequestCounter>,
) -> Result<Client, kube::Error> {
    use hyper_util::client::legacy::connect::HttpConnector;
    use hyper_util::rt::TokioExecutor;
    use kube::client::ConfigExt;
    use tower::{BoxError, ServiceBuilder};

    if config.proxy_url.is_some() {
        return Client::try_from(config.clone());
    }
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    let https = config.rustls_https_connector_with_connector(http)?;
    let mut connector = hyper_timeout::TimeoutConnector::new(https);
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    // Outside the timeouts, so that each attempt has the whole connect timeout.
    let connector = Patient {
        inner: connector,
        until,
    };
    let http_client =
        hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(connector);
    let service = ServiceBuilder::new()
        .map_request(move |request: http::Request<kube::client::Body>| {
            counter.sent(request.method());
            request
        })
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(BoxError::from)
        .service(http_client);
    Ok(Client::new(service, config.default_namespace.clone()))
}

impl KubeStore {
    /// Connects to the cluster `options` names. Nothing is sent yet: a server that is down
    /// shows at the first request, which waits for it to accept connections (until the
    /// deadline), and then fails as [`StoreError::Busy`].
    ///
    /// Errors: [`StoreError::Io`] naming the kubeconfig when it cannot be read or used (on one
    /// line, however many the parser's message has), naming the certificate when its
    /// CA or client certificate cannot be used.
    pub fn connect(options: &KubeOptions) -> Result<KubeStore, StoreError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ipam-kube")
            .enable_all()
            .build()
            .map_err(|e| io("start the Kubernetes client's runtime", e))?;
        let where_from = match &options.kubeconfig {
            Some(p) => p.display().to_string(),
            None => "the in-cluster or default kubeconfig".to_owned(),
        };
        let (config, sources) = runtime
            .block_on(async {
                match &options.kubeconfig {
                    Some(path) => {
                        let kc = Kubeconfig::read_from(path).map_err(|e| e.to_string())?;
                        let sources = Sources::of_kubeconfig(&kc, &where_from);
                        Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                            .await
                            .map(|c| (c, sources))
                            .map_err(|e| e.to_string())
                    }
                    None => Config::infer()
                        .await
                        .map(|c| (c, Sources::inferred()))
                        .map_err(|e| e.to_string()),
                }
            })
            .map_err(|e| io(&format!("read {where_from}"), connection::one_line(&e)))?;
        let mut config = config;
        config.connect_timeout = Some(options.request_timeout);
        config.read_timeout = Some(options.request_timeout);
        config.write_timeout = Some(options.request_timeout);
        let server = config.cluster_url.to_string();
        // kube keeps only the PEM blocks labelled CERTIFICATE: from anything else it makes a
        // CA of no certificate, which verifies no server, so every connection would fail.
        if config.root_cert.as_ref().is_some_and(Vec::is_empty) && !config.accept_invalid_certs {
            return Err(io(
                &format!("use {where_from}"),
                format!("{} holds no PEM CERTIFICATE block", sources.ca),
            ));
        }
        let deadline = options
            .deadline
            .map(|d| (tokio::time::Instant::now() + d, d));
        let counter = Arc::new(RequestCounter::default());
        let client = {
            let _guard = runtime.enter();
            client(&config, deadline.map(|(at, _)| at), counter.clone()).map_err(|e| {
                let context = format!("use {where_from}");
                match connection::tls_setup_refusal(&e, &sources) {
                    Some(refusal) => io(&context, refusal),
                    None => io(&context, connection::one_line(&e.to_string())),
                }
            })?
        };
        Ok(KubeStore {
            inner: Arc::new(Inner {
                client,
                codec: Codec {
                    prefix: options.prefix.clone(),
                    namespace: options.namespace.clone(),
                    api: options.api,
                },
                namespace: options.namespace.clone(),
                server,
                deadline,
                sources,
                counter,
                cache: options.cache.then(Default::default),
            }),
            runtime,
        })
    }

    /// The API server's address.
    pub fn server(&self) -> &str {
        &self.inner.server
    }

    /// The requests this store has sent since it connected, and how many writes conflicted:
    /// what the node agent reports per call.
    pub fn requests(&self) -> ApiRequests {
        self.inner.counter.now()
    }

    /// Runs `f` on the store's runtime and waits for it from whatever executor calls.
    async fn on_runtime<T, F>(&self, f: impl FnOnce(Arc<Inner>) -> F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: std::future::Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        let inner = self.inner.clone();
        let work = f(inner.clone());
        let task = self.runtime.spawn(async move {
            let Some((at, bound)) = inner.deadline else {
                return work.await;
            };
            match tokio::time::timeout_at(at, work).await {
                Ok(done) => done,
                Err(_) => Err(StoreError::Busy {
                    what: format!(
                        "the API server at {} did not answer within {} s",
                        inner.server,
                        bound.as_secs()
                    ),
                }),
            }
        });
        task.await.map_err(|e| io("run a Kubernetes request", e))?
    }

    /// Creates the store's namespace if it does not exist (tests; a cluster gets it from
    /// `deploy/rbac.yaml`).
    pub async fn ensure_namespace(&self) -> Result<(), StoreError> {
        self.on_runtime(|inner| async move {
            use k8s_openapi::api::core::v1::Namespace;
            let api: Api<Namespace> = Api::all(inner.client.clone());
            let ns = Namespace {
                metadata: kube::core::ObjectMeta {
                    name: Some(inner.namespace.clone()),
                    ..Default::default()
                },
                ..Default::default()
            };
            match api.create(&PostParams::default(), &ns).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
                Err(e) => Err(inner.error("create namespace", &inner.namespace, e)),
            }
        })
        .await
    }

    /// Creates the CustomResourceDefinitions of the store's API ([`ipam_api::Api::crds`]), or replaces
    /// them with this build's, and waits until the API server serves them (tests; a cluster
    /// installs them from `deploy/crds/` or `deploy/spiderpool-compat/`).
    pub async fn install_crds(&self) -> Result<(), StoreError> {
        self.on_runtime(|inner| async move {
            use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
            let api: Api<CustomResourceDefinition> = Api::all(inner.client.clone());
            let crds = inner.codec.api.crds();
            for crd in &crds {
                let name = crd.metadata.name.clone().unwrap_or_default();
                match api.create(&PostParams::default(), crd).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 409 => {
                        // An older schema would prune fields this build writes.
                        let current = api
                            .get(&name)
                            .await
                            .map_err(|e| inner.error("get", &name, e))?;
                        let mut newer = crd.clone();
                        newer.metadata.resource_version = current.metadata.resource_version;
                        api.replace(&name, &PostParams::default(), &newer)
                            .await
                            .map_err(|e| inner.error("replace", &name, e))?;
                    }
                    Err(e) => return Err(inner.error("create", &name, e)),
                }
            }
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            for crd in &crds {
                let name = crd.metadata.name.clone().unwrap_or_default();
                loop {
                    let got = api
                        .get(&name)
                        .await
                        .map_err(|e| inner.error("get", &name, e))?;
                    let established = got
                        .status
                        .and_then(|s| s.conditions)
                        .unwrap_or_default()
                        .iter()
                        .any(|c| c.type_ == "Established" && c.status == "True");
                    if established {
                        break;
                    }
                    if tokio::time::Instant::now() > deadline {
                        return Err(io(
                            &format!("install {name}"),
                            "not established after 60 s",
                        ));
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            Ok(())
        })
        .await
    }

    /// The Pod `namespace/name`: its UID and annotations (`None` if it does not exist). The
    /// plugin reads the pools a Pod asks for from its annotations.
    ///
    /// Errors: [`StoreError::Io`] for a namespace or name that Kubernetes could not give a
    /// Pod, before any request: kube puts both into the request's path unescaped, where a
    /// `?`, `#` or `/` would read another object.
    pub async fn pod(&self, namespace: &str, name: &str) -> Result<Option<PodDetails>, StoreError> {
        let pod = self.get_pod(namespace, name).await?;
        Ok(pod.map(|pod| PodDetails {
            statefulset: statefulset_of(&pod.metadata),
            uid: pod.metadata.uid,
            annotations: pod.metadata.annotations.unwrap_or_default(),
        }))
    }

    /// What the Pod `namespace/name` is now (`None`: it does not exist), read from the API
    /// server, not from a list: the lifecycle controller's last look before it releases an
    /// address.
    ///
    /// Errors: as [`KubeStore::pod`]'s.
    pub async fn pod_facts(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<PodFacts>, StoreError> {
        let pod = self.get_pod(namespace, name).await?;
        Ok(pod.and_then(pod_facts).map(|(_, _, facts)| facts))
    }

    /// GET of the Pod `namespace/name`, its names checked first: kube puts both into the
    /// request's path unescaped, where a `?`, `#` or `/` would read another object.
    async fn get_pod(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<k8s_openapi::api::core::v1::Pod>, StoreError> {
        ipam_core::check_dns_label("namespace", namespace)
            .and_then(|()| ipam_core::check_dns_subdomain("name", name))
            .map_err(|e| io(&format!("get pod {namespace}/{name}"), e))?;
        let (namespace, name) = (namespace.to_owned(), name.to_owned());
        self.on_runtime(|inner| async move {
            use k8s_openapi::api::core::v1::Pod;
            let api: Api<Pod> = Api::namespaced(inner.client.clone(), &namespace);
            api.get_opt(&name)
                .await
                .map_err(|e| inner.error("get pod", &format!("{namespace}/{name}"), e))
        })
        .await
    }

    /// What the Node `name` is now (`None`: it does not exist), read from the API server.
    ///
    /// Errors: [`StoreError::Io`] for a name Kubernetes could not give a Node, before any
    /// request; otherwise as any request's.
    pub async fn node_facts(&self, name: &str) -> Result<Option<NodeFacts>, StoreError> {
        ipam_core::check_dns_subdomain("name", name)
            .map_err(|e| io(&format!("get node {name}"), e))?;
        let name = name.to_owned();
        self.on_runtime(|inner| async move {
            use k8s_openapi::api::core::v1::Node;
            let api: Api<Node> = Api::all(inner.client.clone());
            match api.get_opt(&name).await {
                Ok(node) => Ok(node.as_ref().map(node_facts)),
                Err(e) => Err(inner.error("get node", &name, e)),
            }
        })
        .await
    }

    /// The store's client (its connection pool), for requests the store does not make: the
    /// lifecycle controller's watches.
    pub fn client(&self) -> Client {
        self.inner.client.clone()
    }

    /// Sends `request` with the store's client on the store's runtime, its failure told as
    /// the store's own are (`what` and `object` name it): for a program on the store that
    /// makes other requests of the same cluster, such as the lifecycle controller's Lease.
    pub async fn send<T, F>(
        &self,
        what: &'static str,
        object: String,
        request: impl FnOnce(Client) -> F,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: std::future::Future<Output = Result<T, kube::Error>> + Send + 'static,
    {
        self.on_runtime(|inner| {
            let work = request(inner.client.clone());
            async move { work.await.map_err(|e| inner.error(what, &object, e)) }
        })
        .await
    }

    /// Every Pod and Node of the cluster, each kind from one list read page by page
    /// (500 objects a request): a page that fails fails the whole read, as a Pod missing from
    /// a partial list would look deleted.
    ///
    /// Errors: as any request's ([`StoreError::Transient`] for timeouts and 5xx, and a 410
    /// `Expired` when the list's snapshot is compacted between pages).
    pub async fn workloads(&self) -> Result<Workloads, StoreError> {
        self.on_runtime(|inner| async move {
            use k8s_openapi::api::core::v1::{Node, Pod};
            let mut out = Workloads::default();
            let pods: Api<Pod> = Api::all(inner.client.clone());
            each_page(&pods, ListParams::default(), |page| {
                for (namespace, name, facts) in page.items.into_iter().filter_map(pod_facts) {
                    out.pods.insert((namespace, name), facts);
                }
            })
            .await
            .map_err(|e| inner.error("list", "pods", e))?;
            let nodes: Api<Node> = Api::all(inner.client.clone());
            each_page(&nodes, ListParams::default(), |page| {
                for node in page.items {
                    if let Some(name) = node.metadata.name.clone() {
                        out.nodes.insert(name, node_facts(&node));
                    }
                }
            })
            .await
            .map_err(|e| inner.error("list", "nodes", e))?;
            let statefulsets: Api<StatefulSet> = Api::all(inner.client.clone());
            each_page(&statefulsets, ListParams::default(), |page| {
                for sts in page.items {
                    let meta = &sts.metadata;
                    if let (Some(ns), Some(name)) = (meta.namespace.clone(), meta.name.clone()) {
                        out.statefulsets.insert((ns, name), statefulset_facts(&sts));
                    }
                }
            })
            .await
            .map_err(|e| inner.error("list", "statefulsets", e))?;
            Ok(out)
        })
        .await
    }

    /// What the StatefulSet `namespace/name` is now (`None`: it does not exist), read from
    /// the API server: whether a StatefulSet Pod's DEL keeps its address.
    ///
    /// Errors: as [`KubeStore::pod`]'s.
    pub async fn statefulset(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<StatefulSetFacts>, StoreError> {
        ipam_core::check_dns_label("namespace", namespace)
            .and_then(|()| ipam_core::check_dns_subdomain("name", name))
            .map_err(|e| io(&format!("get statefulset {namespace}/{name}"), e))?;
        let (namespace, name) = (namespace.to_owned(), name.to_owned());
        self.on_runtime(|inner| async move {
            let api: Api<StatefulSet> = Api::namespaced(inner.client.clone(), &namespace);
            api.get_opt(&name)
                .await
                .map(|found| found.as_ref().map(statefulset_facts))
                .map_err(|e| inner.error("get statefulset", &format!("{namespace}/{name}"), e))
        })
        .await
    }

    /// Writes a pool's counts into its `status` (what `kubectl get ippools` prints), by a
    /// merge patch of the status subresource: unconditioned, last writer wins.
    pub async fn publish_pool_status(
        &self,
        counts: &ipam_core::PoolCounts,
    ) -> Result<(), StoreError> {
        let key = Key::Pool(counts.pool.clone());
        #[derive(Debug, serde::Serialize)]
        struct Status {
            status: ipam_api::IPPoolStatus,
        }
        let status = Status {
            status: counts.into(),
        };
        self.on_runtime(|inner| async move {
            let (kind, name) = inner.codec.locate(&key).expect("pools are stored");
            inner
                .api(kind)
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                .await
                .map(|_| ())
                .map_err(|e| inner.error("update status of", &name, e))
        })
        .await
    }

    /// Deletes the store's namespace (tests).
    pub async fn delete_namespace(&self) -> Result<(), StoreError> {
        self.on_runtime(|inner| async move {
            use k8s_openapi::api::core::v1::Namespace;
            let api: Api<Namespace> = Api::all(inner.client.clone());
            match api.delete(&inner.namespace, &DeleteParams::default()).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
                Err(e) => Err(inner.error("delete namespace", &inner.namespace, e)),
            }
        })
        .await
    }
}

impl Inner {
    /// Records in the cache (if any) what the server answered for `key`: a record, or that
    /// it has none (`None`, which is forgotten, not cached).
    fn remember(&self, key: &Key, answer: Option<&Versioned<Record>>) {
        let Some(cache) = &self.cache else { return };
        let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
        match answer {
            Some(record) => {
                if cache.len() >= CACHE_LIMIT {
                    cache.clear();
                }
                cache.insert(key.encode(), record.clone());
            }
            None => {
                cache.remove(&key.encode());
            }
        }
    }

    /// What an object written under `key` now is, as the server answered the write.
    fn learn_written(&self, kind: Kind, key: &Key, obj: &DynamicObject) {
        if self.cache.is_none() {
            return;
        }
        match self.codec.decode(kind, obj, Some(key)) {
            Ok(Some((_, record))) => self.remember(key, Some(&record)),
            _ => self.remember(key, None),
        }
    }

    fn api(&self, kind: Kind) -> Api<DynamicObject> {
        let resource = self.codec.resource(kind);
        if kind.namespaced() {
            Api::namespaced_with(self.client.clone(), &self.namespace, &resource)
        } else {
            Api::all_with(self.client.clone(), &resource)
        }
    }

    /// The store error for a failed request: 409 a conflict; an object too large for etcd
    /// (or the API server) refused for good; what may pass (no answer, 429, 5xx)
    /// transient; connections refused past the deadline busy; a certificate that does not
    /// verify, and anything else, an I/O error naming the server.
    fn error(&self, what: &str, object: &str, e: kube::Error) -> StoreError {
        let context = format!("{what} {object} at {}", self.server);
        if matches!(e, kube::Error::HyperError(_) | kube::Error::Service(_)) {
            if let Some(refused) = connection::find::<StillRefused>(&e) {
                return StoreError::Busy {
                    what: format!(
                        "{context}: connections refused for {} s, until the call's deadline: {}",
                        refused.waited.as_secs(),
                        connection::with_causes(&*refused.last)
                    ),
                };
            }
            if let Some(refusal) = connection::tls_refusal(&e, &self.sources) {
                return StoreError::Io {
                    context,
                    source: Box::new(refusal),
                };
            }
        }
        match e {
            kube::Error::Api(s) if s.code == 409 => {
                self.counter.conflict();
                StoreError::Conflict {
                    key: object.to_owned(),
                }
            }
            // A 500 that no retry can pass: etcd refuses the request's size.
            kube::Error::Api(s) if too_large(&s) => StoreError::TooLarge {
                key: object.to_owned(),
                size: None,
                limit: ETCD_REQUEST_LIMIT,
                why: format!(
                    "the API server refused to {context} ({} {}: {}); etcd's request limit is 1.5 MiB unless the cluster sets --max-request-bytes",
                    s.code, s.reason, s.message
                ),
            },
            // A 404 whose body is no Status comes from the server's router, not from a
            // lookup: the path is not served. An API server that has just started answers so
            // until its CRD handlers are ready (a second or so); retried like a 5xx, and a
            // read waits for it (`KubeStore::read`).
            kube::Error::Api(s) if s.code == 404 && s.reason == UNPARSED_ERROR => {
                StoreError::Transient {
                    context,
                    source: Box::new(NotServed(s.message.clone())),
                }
            }
            kube::Error::Api(s) if s.code == 429 || s.code >= 500 => StoreError::Transient {
                context,
                source: format!("{} {}: {}", s.code, s.reason, s.message).into(),
            },
            kube::Error::Api(s) if s.code == 404 && s.message.contains("namespaces") => {
                StoreError::Io {
                    context,
                    source: format!(
                        "{} {}: {}; the store's namespace {:?} must exist (deploy/rbac.yaml creates `ipam-rs`)",
                        s.code, s.reason, s.message, self.namespace
                    )
                    .into(),
                }
            }
            kube::Error::Api(s) => StoreError::Io {
                context,
                source: format!("{} {}: {}", s.code, s.reason, s.message).into(),
            },
            kube::Error::HyperError(_) | kube::Error::Service(_) => StoreError::Transient {
                context,
                source: Box::new(e),
            },
            other => StoreError::Io {
                context,
                source: Box::new(other),
            },
        }
    }

    async fn get(&self, key: &Key) -> Result<Option<Versioned<Record>>, StoreError> {
        let (kind, name) = match self.codec.place(key) {
            Place::Object(kind, name) => (kind, name),
            Place::Derived => {
                let summary = self.summary().await?;
                self.remember(key, Some(&summary));
                return Ok(Some(summary));
            }
        };
        let read = match self.api(kind).get_opt(&name).await {
            Ok(None) => None,
            Ok(Some(obj)) => self.codec.decode(kind, &obj, Some(key))?.map(|(_, v)| v),
            Err(e) => return Err(self.error("get", &name, e)),
        };
        self.remember(key, read.as_ref());
        Ok(read)
    }

    /// The union of every ReservedIP, read from the objects themselves: one list, a
    /// consistent read, so an ADD that starts after a ReservedIP was applied (by ipamctl or
    /// kubectl) sees it. Its version is the list's.
    ///
    /// Fails closed: while any ReservedIP is invalid (written with kubectl), what it would
    /// reserve cannot be known, so the summary is an invalid record naming it and no
    /// address is handed out until it is fixed or deleted.
    async fn summary(&self) -> Result<Versioned<Record>, StoreError> {
        let (all, version) = self.list(&KeyRange::ReservedIps).await?;
        let mut reservations = Vec::with_capacity(all.len());
        let mut invalid: Vec<ipam_core::backend::InvalidRecord> = Vec::new();
        for (_, v) in all {
            match v.value {
                Record::ReservedIp(r) => reservations.push(r),
                Record::Invalid(bad) => invalid.push(bad),
                // Objects of the ReservedIP kind decode as nothing else.
                Record::Pool(_)
                | Record::ReservedSummary(_)
                | Record::Block(_)
                | Record::Cursor(_)
                | Record::Owner(_)
                | Record::PoolRanges(_) => {
                    unreachable!("a ReservedIP object decoded as another record")
                }
            }
        }
        let value = if invalid.is_empty() {
            Record::ReservedSummary(ipam_core::FamilySets::union_of(&reservations))
        } else {
            Record::Invalid(ipam_core::backend::InvalidRecord {
                object: invalid
                    .iter()
                    .map(|b| b.object.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                reason: invalid
                    .iter()
                    .map(|b| b.reason.as_str())
                    .collect::<Vec<_>>()
                    .join("; "),
            })
        };
        Ok(Versioned {
            value,
            version: ipam_core::Version::new(version),
        })
    }

    async fn scan(&self, range: &KeyRange) -> Result<Vec<(Key, Versioned<Record>)>, StoreError> {
        Ok(self.list(range).await?.0)
    }

    /// The records of `range`, and the resourceVersion of the list. IPPool and ReservedIP
    /// objects that do not decode (applied with kubectl, which no webhook validates) are
    /// left out of lists, so that one bad object does not stop every allocation; reading
    /// one by name still says what is wrong with it.
    async fn list(
        &self,
        range: &KeyRange,
    ) -> Result<(Vec<(Key, Versioned<Record>)>, String), StoreError> {
        let (kind, extra) = Kind::of_range(range);
        let api = self.api(kind);
        let mut params = ListParams::default();
        if let Some(selector) = self.codec.selector(kind, extra) {
            params = params.labels(&selector);
        }
        let mut out = Vec::new();
        let mut version = String::new();
        each_page(&api, params, |page| {
            if version.is_empty() {
                version = page.metadata.resource_version.clone().unwrap_or_default();
            }
            for obj in &page.items {
                // An object that lies under no key (a name no record has, fields that name
                // no owner) is nothing the engine reads: left out. One that lies under a key
                // but does not read comes as an invalid record (see `Codec::decode`).
                let Ok(decoded) = self.codec.decode(kind, obj, None) else {
                    continue;
                };
                if let Some((key, value)) = decoded {
                    if range.contains(&key) {
                        out.push((key, value));
                    }
                }
            }
        })
        .await
        .map_err(|e| self.error("list", &self.codec.resource(kind).plural, e))?;
        out.sort_by_key(|(k, _)| k.encode());
        Ok((out, version))
    }

    /// One operation, as a compare-and-swap of one object; the cache (if any) learns the
    /// object as the server answered, or forgets it when the answer is not known.
    async fn apply(&self, op: Op) -> Result<(), StoreError> {
        let key = op.key().clone();
        let result = self.apply_uncached(op).await;
        if let Some(cache) = &self.cache {
            let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
            if matches!(key, Key::ReservedIp(_)) {
                // The summary is derived from the ReservedIP objects.
                cache.remove(&Key::ReservedSummary.encode());
            }
            if result.is_err() {
                // Not known whether it was applied: read again next time.
                cache.remove(&key.encode());
            }
        }
        result
    }

    async fn apply_uncached(&self, op: Op) -> Result<(), StoreError> {
        let (kind, name) = match self.codec.place(op.key()) {
            Place::Object(kind, name) => (kind, name),
            // The reservation summary is derived from the ReservedIP objects, which the same
            // commit writes: nothing of its own to write.
            Place::Derived => return Ok(()),
        };
        let api = self.api(kind);
        let conflict = || StoreError::Conflict { key: name.clone() };
        let pp = PostParams::default();
        match op {
            Op::Put {
                key,
                record,
                expect,
            } => {
                let mut obj = self.codec.object(&key, &record);
                match expect {
                    Expect::Absent => match api.create(&pp, &obj).await {
                        Ok(written) => {
                            self.learn_written(kind, &key, &written);
                            Ok(())
                        }
                        Err(e) => Err(self.error("create", &name, e)),
                    },
                    Expect::Version(v) => {
                        obj.metadata.resource_version = Some(v.as_str().to_owned());
                        // The API server skips a write that changes nothing and keeps the
                        // resourceVersion, but a guard (a block written back unchanged)
                        // must change it: the version it replaces is new content each time.
                        obj.metadata
                            .annotations
                            .get_or_insert_with(Default::default)
                            .insert(REPLACES_ANNOTATION.to_owned(), v.as_str().to_owned());
                        match api.replace(&name, &pp, &obj).await {
                            Ok(written) => {
                                self.learn_written(kind, &key, &written);
                                Ok(())
                            }
                            Err(kube::Error::Api(s)) if s.code == 404 => Err(conflict()),
                            Err(e) => Err(self.error("replace", &name, e)),
                        }
                    }
                    Expect::Any => {
                        // Last writer wins. A custom resource refuses a replace without a
                        // resourceVersion (422), but takes a merge patch: one request where
                        // the object exists, a create where it does not.
                        let patch = Patch::Merge(&obj);
                        for _ in 0..5 {
                            match api.patch(&name, &PatchParams::default(), &patch).await {
                                Ok(written) => {
                                    self.learn_written(kind, &key, &written);
                                    return Ok(());
                                }
                                Err(kube::Error::Api(s)) if s.code == 404 => {}
                                Err(e) => return Err(self.error("patch", &name, e)),
                            }
                            match api.create(&pp, &obj).await {
                                Ok(written) => {
                                    self.learn_written(kind, &key, &written);
                                    return Ok(());
                                }
                                Err(kube::Error::Api(s)) if s.code == 409 => {}
                                Err(e) => return Err(self.error("create", &name, e)),
                            }
                        }
                        Err(conflict())
                    }
                }
            }
            Op::Delete { key, expect } => {
                // Gone, or not known to be there: either way nothing to keep.
                self.remember(&key, None);
                let mut dp = DeleteParams::default();
                match expect {
                    Expect::Absent => {
                        return match api.get_opt(&name).await {
                            Ok(None) => Ok(()),
                            Ok(Some(_)) => Err(conflict()),
                            Err(e) => Err(self.error("get", &name, e)),
                        }
                    }
                    Expect::Version(v) => {
                        dp.preconditions = Some(Preconditions {
                            resource_version: Some(v.as_str().to_owned()),
                            uid: None,
                        })
                    }
                    Expect::Any => {}
                }
                let must_exist = dp.preconditions.is_some();
                match api.delete(&name, &dp).await {
                    Ok(_) => Ok(()),
                    Err(kube::Error::Api(s)) if s.code == 404 && !must_exist => Ok(()),
                    Err(kube::Error::Api(s)) if s.code == 404 => Err(conflict()),
                    Err(e) => Err(self.error("delete", &name, e)),
                }
            }
        }
    }
}

/// What kube makes of an error answer whose body is not a Kubernetes `Status`: its reason.
const UNPARSED_ERROR: &str = "Failed to parse error data";

/// How long a read waits for an API server that does not serve the store's kinds yet, at
/// most (and never past the call's deadline): one that has just started serves them within a
/// second or two; one that still does not has no CRDs, which waiting does not fix.
const NOT_SERVED_WAIT: Duration = Duration::from_secs(10);

/// The API server answered a plain 404: it does not serve the path (yet).
#[derive(Debug)]
struct NotServed(String);

impl std::fmt::Display for NotServed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: the API server does not serve the store's kinds (it is starting, or the CRDs of deploy/crds/ are not installed)",
            self.0
        )
    }
}

impl std::error::Error for NotServed {}

fn is_not_served(e: &StoreError) -> bool {
    matches!(e, StoreError::Transient { source, .. } if source.downcast_ref::<NotServed>().is_some())
}

impl KubeStore {
    /// Runs the read `attempt`, again every 250 ms while the API server does not serve the
    /// store's kinds yet, for [`NOT_SERVED_WAIT`] at most and never past the call's
    /// deadline; then the failure is final ([`StoreError::Io`], naming the CRDs), not one to
    /// retry. Reads only: they change nothing, so trying again is always safe.
    async fn read<T, F, Fut>(&self, attempt: F) -> Result<T, StoreError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        let mut until = tokio::time::Instant::now() + NOT_SERVED_WAIT;
        if let Some((at, _)) = self.inner.deadline {
            until = until.min(at);
        }
        loop {
            match attempt().await {
                Err(e) if is_not_served(&e) => {
                    if tokio::time::Instant::now() + Duration::from_millis(250) >= until {
                        let StoreError::Transient { context, source } = e else {
                            unreachable!("is_not_served matched a Transient")
                        };
                        return Err(StoreError::Io { context, source });
                    }
                    // Slept on the store's runtime (a timer is made inside it): the caller's
                    // executor may be any.
                    let pause = async { tokio::time::sleep(Duration::from_millis(250)).await };
                    let _ = self.runtime.spawn(pause).await;
                }
                other => return other,
            }
        }
    }

    /// The records of `keys`: one request after another, or together for a store that caches.
    async fn get_each(&self, keys: Vec<Key>) -> Result<Vec<Option<Versioned<Record>>>, StoreError> {
        self.on_runtime(|inner| async move {
            // One after another, on one connection. Over HTTP/1.1 each request in flight
            // needs a connection of its own, and a CNI process lives for one call: reads in
            // parallel cost a TCP and TLS handshake each (two round trips, and an RSA
            // signature on the API server), more than the round trip they save. Measured
            // with ten nodes' plugins at once: 4 connections per ADD took the API server
            // 28 s of CPU for 1,000 ADDs and 1,000 DELs (ipam-cni/bench/RESULTS.md).
            //
            // A store that caches lives for many calls (the node agent): its connections
            // stay open between them, so there reads go out together, each on a connection
            // of its own that the next call reuses.
            if inner.cache.is_some() && keys.len() > 1 {
                let reads: Vec<_> = keys
                    .into_iter()
                    .map(|key| {
                        let inner = inner.clone();
                        tokio::spawn(async move { inner.get(&key).await })
                    })
                    .collect();
                let mut out = Vec::with_capacity(reads.len());
                for read in reads {
                    out.push(
                        read.await
                            .map_err(|e| io("read from the API server", e))??,
                    );
                }
                return Ok(out);
            }
            let mut out = Vec::with_capacity(keys.len());
            for key in &keys {
                out.push(inner.get(key).await?);
            }
            Ok(out)
        })
        .await
    }
}

#[async_trait]
impl Store for KubeStore {
    async fn get(&self, key: &Key) -> Result<Option<Versioned<Record>>, StoreError> {
        self.read(|| {
            let key = key.clone();
            self.on_runtime(|inner| async move { inner.get(&key).await })
        })
        .await
    }

    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Option<Versioned<Record>>>, StoreError> {
        self.read(|| self.get_each(keys.to_vec())).await
    }

    async fn scan(&self, range: &KeyRange) -> Result<Vec<(Key, Versioned<Record>)>, StoreError> {
        self.read(|| {
            let range = range.clone();
            self.on_runtime(|inner| async move { inner.scan(&range).await })
        })
        .await
    }

    fn caches(&self) -> bool {
        self.inner.cache.is_some()
    }

    fn cached(&self, key: &Key) -> Option<Versioned<Record>> {
        let cache = self.inner.cache.as_ref()?;
        let cache = cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.get(&key.encode()).cloned()
    }

    fn record_size(&self, key: &Key, record: &Record) -> Option<ipam_core::RecordSize> {
        // The summary is derived from the ReservedIP objects, never written.
        self.inner.codec.locate(key)?;
        let object = self.inner.codec.object(key, record);
        let size = serde_json::to_vec(&object).map_or(u64::MAX, |b| b.len() as u64);
        Some(ipam_core::RecordSize {
            size,
            limit: MAX_OBJECT_BYTES,
            why: "as a Kubernetes object; etcd takes at most 1.5 MiB per request, and 64 KiB are left for the API server's metadata",
        })
    }

    async fn commit(&self, txn: Transaction) -> Result<(), StoreError> {
        self.on_runtime(|inner| async move {
            let (hints, ops): (Vec<Op>, Vec<Op>) =
                txn.into_ops().into_iter().partition(Op::is_hint);
            // The writes that decide, in order; then the hints, on the same connection (a
            // second connection in parallel would cost a handshake: see `get_many`). A
            // hint's failure is no failure of the commit, and a failed commit sends none.
            let mut result = Ok(());
            for op in ops {
                if let Err(e) = inner.apply(op).await {
                    result = Err(e);
                    break;
                }
            }
            if result.is_ok() {
                for hint in hints {
                    let _ = inner.apply(hint).await;
                }
            }
            result
        })
        .await
    }
}

/// Whether the API server refused a request for its size: etcd's "request is too large"
/// (a 500) or the API server's own body limit (413).
fn too_large(s: &kube::core::Status) -> bool {
    s.code == 413 || (s.code == 500 && s.message.contains("request is too large"))
}

fn io(context: &str, e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> StoreError {
    StoreError::Io {
        context: context.to_owned(),
        source: e.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kubeconfig that names a proxy gets kube's own client stack, which says that this
    /// build has no proxy support, rather than a stack that would ignore the proxy and go
    /// straight to the server.
    #[test]
    fn a_proxy_in_the_kubeconfig_is_not_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kubeconfig");
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:1\n    proxy-url: http://127.0.0.1:3128\n\
             users:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\ncurrent-context: x\n",
        )
        .unwrap();
        let options = KubeOptions {
            kubeconfig: Some(path),
            ..KubeOptions::default()
        };
        let err = KubeStore::connect(&options).unwrap_err().to_string();
        assert!(err.contains("proxy"), "{err}");
    }

    fn kubeconfig(dir: &std::path::Path, text: &str) -> KubeOptions {
        let path = dir.join("kubeconfig");
        std::fs::write(&path, text).unwrap();
        KubeOptions {
            kubeconfig: Some(path),
            ..KubeOptions::default()
        }
    }

    const UNREACHABLE: &str = "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:1\n\
         users:\n- name: u\n  user:\n    token: t\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\ncurrent-context: x\n";

    /// A YAML error in the kubeconfig is one line: it ends up in a CNI error's `msg` and a
    /// one-line log record, and the parser's own message quotes the input over several.
    #[test]
    fn a_kubeconfig_that_is_not_yaml_is_named_on_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let options = kubeconfig(
            dir.path(),
            "apiVersion: v1\nclusters:\n- name: c\n  cluster: [\n",
        );
        let err = KubeStore::connect(&options).unwrap_err().to_string();
        assert!(!err.contains('\n'), "{err:?}");
        assert!(
            err.starts_with(&format!(
                "store I/O error: read {}: failed to parse kubeconfig YAML: ",
                options.kubeconfig.as_ref().unwrap().display()
            )) && err.ends_with("line 4 column 12: expected mapping start"),
            "{err}"
        );
    }

    /// kube puts a Pod's namespace and name into the request's path as they are: a name that
    /// Kubernetes could not give a Pod is refused before anything is sent (this server does
    /// not exist), so that `web?x=1` cannot read Pod `web`.
    #[test]
    fn a_pod_name_kubernetes_could_not_give_is_refused_before_any_request() {
        let dir = tempfile::tempdir().unwrap();
        let store = KubeStore::connect(&kubeconfig(dir.path(), UNREACHABLE)).unwrap();
        for (namespace, name, field) in [
            ("apps", "p-good?x=1", "name"),
            ("apps", "p#frag", "name"),
            ("apps", "p good", "name"),
            ("apps", "../../namespaces", "name"),
            ("a/b", "web", "namespace"),
        ] {
            let started = std::time::Instant::now();
            let err = pollster::block_on(store.pod(namespace, name)).unwrap_err();
            assert!(started.elapsed() < Duration::from_secs(1), "{err}");
            let StoreError::Io { context, source } = &err else {
                panic!("{err:?}")
            };
            assert_eq!(context, &format!("get pod {namespace}/{name}"));
            let value = if field == "name" { name } else { namespace };
            assert!(
                source
                    .to_string()
                    .starts_with(&format!("{field}: {value:?}: ")),
                "{source}"
            );
        }
    }

    /// A CA that holds no certificate (kube keeps only PEM `CERTIFICATE` blocks, and makes a
    /// CA that verifies nothing of anything else) is named when the store is opened, not
    /// taken for an unreachable server at every request.
    #[test]
    fn a_certificate_authority_that_is_no_certificate_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let text = UNREACHABLE.replace(
            "    server: https://127.0.0.1:1\n",
            "    server: https://127.0.0.1:1\n    certificate-authority-data: bm90IGEgY2VydGlmaWNhdGUK\n",
        );
        let options = kubeconfig(dir.path(), &text);
        let err = KubeStore::connect(&options).unwrap_err().to_string();
        let path = options.kubeconfig.as_ref().unwrap().display().to_string();
        assert_eq!(
            err,
            format!("store I/O error: use {path}: certificate-authority-data of cluster \"c\" in {path} holds no PEM CERTIFICATE block")
        );
    }
}
