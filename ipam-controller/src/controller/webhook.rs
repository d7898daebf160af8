//! The validating admission webhook (admissionregistration.k8s.io/v1) for pools and
//! reservations written with kubectl: an AdmissionReview in, a decision out.
//!
//! Its checks are those of `ipamctl apply` and `ipamctl delete`, from the same code: the
//! reading of the object ([`ipam_api::decode::decode_object`]: apiVersion and kind, address
//! syntax, host bits, unknown fields, Spiderpool's unimplemented fields) and the engine's dry
//! runs against the stored pools ([`ipam_core::Ipam::check_pool`]: overlapping pools named
//! both, the subnet of a pool that holds addresses; [`ipam_core::Ipam::check_pool_deletion`]:
//! a pool that holds addresses is not deleted unless forced). A deletion is forced by the
//! annotation [`FORCE_DELETE_ANNOTATION`] set on the pool before the delete; the addresses it
//! holds then stay with their holders until their DEL (`ipamctl delete --force` releases
//! them first).
//!
//! Served on every replica (not only the leader), over TLS ([`super::tls`]), on `/validate`;
//! `/healthz` answers 200 once it serves (the Pod's readiness).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use ipam_api::decode::{decode_object, Decoded, RefusalKind};
use ipam_api::Api;
use ipam_core::{Error, Ipam, ObjectName, Store};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::metrics::Metrics;

/// The annotation that forces the deletion of a pool holding addresses, set before the
/// delete (`kubectl annotate ippool NAME ipam.rs/force-delete=true`).
pub const FORCE_DELETE_ANNOTATION: &str = "ipam.rs/force-delete";

/// The largest review read: the API server sends objects of at most 3 MiB, old and new.
const MAX_REVIEW_BYTES: usize = 8 << 20;

/// An AdmissionReview as the API server sends it (the fields the decision reads).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionReview {
    /// `admission.k8s.io/v1`.
    #[serde(default)]
    pub api_version: String,
    /// The request.
    pub request: Option<AdmissionRequest>,
}

/// The request of a review.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionRequest {
    /// Echoed in the response.
    pub uid: String,
    /// The kind of the object.
    pub kind: GroupVersionKind,
    /// A subresource (`status`), if the write is to one.
    #[serde(default)]
    pub sub_resource: Option<String>,
    /// The object's name.
    #[serde(default)]
    pub name: String,
    /// `CREATE`, `UPDATE`, `DELETE` or `CONNECT`.
    pub operation: String,
    /// The object written (`CREATE`, `UPDATE`).
    #[serde(default)]
    pub object: Option<Value>,
    /// The object as stored (`UPDATE`, `DELETE`).
    #[serde(default)]
    pub old_object: Option<Value>,
}

/// A kind, as a review names it.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct GroupVersionKind {
    /// The API group.
    #[serde(default)]
    pub group: String,
    /// Its version.
    #[serde(default)]
    pub version: String,
    /// The kind.
    #[serde(default)]
    pub kind: String,
}

/// Why an object was refused: the `reason` label of `ipam_rs_webhook_refusals_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The object itself: address syntax, host bits, a field of the wrong type, a name.
    Invalid,
    /// A field the kind does not have.
    UnknownField,
    /// A Spiderpool field ipam-rs does not implement, set to something.
    Unimplemented,
    /// Its addresses overlap another pool's.
    Overlap,
    /// A new subnet (or family) for a pool that holds addresses.
    SubnetInUse,
    /// The deletion, not forced, of a pool that holds addresses.
    PoolInUse,
}

impl Reason {
    /// The label value.
    pub fn code(self) -> &'static str {
        match self {
            Reason::Invalid => "invalid",
            Reason::UnknownField => "unknownField",
            Reason::Unimplemented => "unimplemented",
            Reason::Overlap => "overlap",
            Reason::SubnetInUse => "subnetInUse",
            Reason::PoolInUse => "poolInUse",
        }
    }
}

/// What the webhook answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Admitted; a warning kubectl prints, if any.
    Allowed(Option<String>),
    /// Refused: the reason and the message kubectl prints.
    Refused(Reason, String),
    /// Not judged: the stored pools could not be read. Refused (so that nothing unchecked
    /// gets in while the webhook is up), with the cause.
    Failed(String),
}

/// What the webhook judges with: the store's engine, the API the installation serves, and
/// the store's namespace (pools of another store's namespace are that store's to judge).
pub struct Judge<S: Store> {
    /// The engine on the store.
    pub ipam: Ipam<S>,
    /// The installation's API.
    pub api: Api,
    /// The store's namespace.
    pub namespace: String,
}

impl<S: Store> Judge<S> {
    /// The decision on one request.
    pub async fn decide(&self, request: &AdmissionRequest) -> Decision {
        let group = match self.api {
            Api::IpamRs => ipam_api::GROUP,
            Api::Spiderpool => ipam_api::spiderpool::GROUP,
        };
        if request.kind.group != group {
            return Decision::Allowed(Some(format!(
                "{} of group {} is not checked: this installation's pools are of {group}",
                request.kind.kind, request.kind.group
            )));
        }
        // Status writes are not matched by the configuration; should one come, it changes
        // no spec.
        if request
            .sub_resource
            .as_deref()
            .is_some_and(|s| !s.is_empty())
        {
            return Decision::Allowed(None);
        }
        let is_pool = [ipam_api::KIND_POOL, ipam_api::spiderpool::KIND_POOL]
            .contains(&request.kind.kind.as_str());
        match request.operation.as_str() {
            "CREATE" | "UPDATE" => {
                let object = request.object.clone().unwrap_or(Value::Null);
                if let Some(owner) = self.foreign(&object) {
                    return Decision::Allowed(Some(format!(
                        "not checked here: the pool belongs to the store in namespace {owner:?}"
                    )));
                }
                match decode_object(&object) {
                    Err(refusal) => {
                        let reason = match refusal.kind {
                            RefusalKind::UnknownField => Reason::UnknownField,
                            RefusalKind::Unimplemented => Reason::Unimplemented,
                            RefusalKind::Invalid => Reason::Invalid,
                        };
                        Decision::Refused(reason, refusal.to_string())
                    }
                    Ok(Decoded::Reserved(_)) => Decision::Allowed(None),
                    Ok(Decoded::Pool(pool)) => match self.ipam.check_pool(&pool).await {
                        Ok(()) => Decision::Allowed(None),
                        Err(Error::Invalid(e)) => {
                            let reason = if e.field() == "spec.subnet" {
                                Reason::SubnetInUse
                            } else {
                                Reason::Overlap
                            };
                            let label = format!("{} {:?}", request.kind.kind, pool.name().as_str());
                            Decision::Refused(reason, format!("{label}: {e}"))
                        }
                        Err(e) => Decision::Failed(format!(
                            "cannot check {} {:?} against the stored pools: {e}",
                            request.kind.kind, request.name
                        )),
                    },
                }
            }
            "DELETE" if is_pool => {
                let old = request.old_object.clone().unwrap_or(Value::Null);
                if self.foreign(&old).is_some() {
                    return Decision::Allowed(None);
                }
                let forced = old
                    .pointer("/metadata/annotations")
                    .and_then(|a| a.get(FORCE_DELETE_ANNOTATION))
                    .and_then(Value::as_str)
                    == Some("true");
                if forced {
                    return Decision::Allowed(Some(format!(
                        "deletion forced by {FORCE_DELETE_ANNOTATION}: addresses the pool holds stay with their holders until their DEL"
                    )));
                }
                // A name no pool can have is no pool the engine reads.
                let Ok(name) = ObjectName::new(&request.name) else {
                    return Decision::Allowed(None);
                };
                match self.ipam.check_pool_deletion(&name).await {
                    Ok(()) => Decision::Allowed(None),
                    Err(Error::PoolInUse { pool, allocated }) => Decision::Refused(
                        Reason::PoolInUse,
                        format!(
                            "{} {pool:?}: holds {allocated} address(es); release them (CNI DEL) first, \
                             or force the deletion: metadata.annotations[{FORCE_DELETE_ANNOTATION}]: \"true\" \
                             set before the delete (the holders keep their addresses until their DEL), \
                             or ipamctl delete --force (releases them)",
                            request.kind.kind
                        ),
                    ),
                    Err(e) => Decision::Failed(format!(
                        "cannot check the deletion of {} {:?}: {e}",
                        request.kind.kind, request.name
                    )),
                }
            }
            _ => Decision::Allowed(None),
        }
    }

    /// The store namespace a pool object is annotated for, if not this one.
    fn foreign(&self, object: &Value) -> Option<String> {
        object
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(ipam_kube::codec::NAMESPACE_ANNOTATION))
            .and_then(Value::as_str)
            .filter(|ns| *ns != self.namespace)
            .map(str::to_owned)
    }

    /// One review: the response document, and the decision it carries. A body that is no
    /// AdmissionReview with a request is `Err` with why (answered 400).
    pub async fn review(&self, body: &[u8]) -> Result<(Value, Decision), String> {
        let review: AdmissionReview =
            serde_json::from_slice(body).map_err(|e| format!("not an AdmissionReview: {e}"))?;
        let request = review
            .request
            .ok_or_else(|| "an AdmissionReview without a request".to_owned())?;
        let decision = self.decide(&request).await;
        let response = match &decision {
            Decision::Allowed(warning) => {
                let mut r = serde_json::json!({"uid": request.uid, "allowed": true});
                if let Some(w) = warning {
                    r["warnings"] = serde_json::json!([w]);
                }
                r
            }
            // 403 Forbidden, as the API server answers a webhook's refusal by default: kubectl
            // prints its message (a 422 Invalid without field causes prints only "The
            // request is invalid").
            Decision::Refused(_, message) => serde_json::json!({
                "uid": request.uid,
                "allowed": false,
                "status": {"code": 403, "reason": "Forbidden", "message": message},
            }),
            Decision::Failed(message) => serde_json::json!({
                "uid": request.uid,
                "allowed": false,
                "status": {"code": 500, "reason": "InternalError", "message": message},
            }),
        };
        Ok((
            serde_json::json!({
                "apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview",
                "response": response,
            }),
            decision,
        ))
    }
}

/// Serves the webhook on `address` over TLS with `tls`, on a runtime of its own, for ever.
/// Binding fails at once (the caller says why and exits: a replica that cannot serve must
/// not look ready).
pub fn serve<S: Store + Send + Sync + 'static>(
    address: SocketAddr,
    tls: rustls::ServerConfig,
    judge: Arc<Judge<S>>,
    metrics: Arc<Metrics>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let listener = runtime.block_on(tokio::net::TcpListener::bind(address))?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    Ok(std::thread::spawn(move || {
        runtime.block_on(async move {
            loop {
                let (tcp, _) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("ipam-controller: webhook: accept: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let (acceptor, judge, metrics) = (acceptor.clone(), judge.clone(), metrics.clone());
                tokio::spawn(async move {
                    // A client that does not finish its handshake (a TCP probe) is no error.
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |request| {
                        let (judge, metrics) = (judge.clone(), metrics.clone());
                        async move { Ok::<_, Infallible>(handle(request, &judge, &metrics).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
    }))
}

/// One HTTP request.
async fn handle<S: Store>(
    request: Request<Incoming>,
    judge: &Judge<S>,
    metrics: &Metrics,
) -> Response<Full<Bytes>> {
    let text = |status: StatusCode, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r
    };
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n".into()),
        (&Method::POST, "/validate") => {
            let body = match Limited::new(request.into_body(), MAX_REVIEW_BYTES)
                .collect()
                .await
            {
                Ok(b) => b.to_bytes(),
                Err(e) => {
                    metrics.webhook_error();
                    return text(
                        StatusCode::BAD_REQUEST,
                        format!("cannot read the review: {e}\n"),
                    );
                }
            };
            match judge.review(&body).await {
                Ok((response, decision)) => {
                    metrics.webhook_decided(&decision);
                    if let Decision::Refused(reason, message) = &decision {
                        eprintln!(
                            "ipam-controller: webhook refused ({}): {message}",
                            reason.code()
                        );
                    }
                    if let Decision::Failed(message) = &decision {
                        eprintln!("ipam-controller: webhook could not check: {message}");
                    }
                    let mut r = text(StatusCode::OK, response.to_string());
                    r.headers_mut().insert(
                        hyper::header::CONTENT_TYPE,
                        hyper::header::HeaderValue::from_static("application/json"),
                    );
                    r
                }
                Err(why) => {
                    metrics.webhook_error();
                    text(StatusCode::BAD_REQUEST, format!("{why}\n"))
                }
            }
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: POST /validate or GET /healthz\n".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipam_core::{IpPool, IpPoolSpec, MemoryStore, Owner, Request as Add, Slot};
    use pollster::block_on;
    use serde_json::json;

    /// A judge on a store that holds the pool `used` (10.6.0.0/24, 10.6.0.10-10.6.0.20)
    /// with one address taken, and the empty pool `empty` (10.7.0.0/24).
    fn judge(api: Api) -> Judge<MemoryStore> {
        let ipam = Ipam::new(MemoryStore::new());
        let pool = |name: &str, subnet: &str, ips: &str| {
            IpPool::new(
                name,
                IpPoolSpec {
                    subnet: subnet.into(),
                    ips: vec![ips.into()],
                    ..IpPoolSpec::default()
                },
            )
            .unwrap()
        };
        block_on(ipam.apply_pool(pool("used", "10.6.0.0/24", "10.6.0.10-10.6.0.20"))).unwrap();
        block_on(ipam.apply_pool(pool("empty", "10.7.0.0/24", "10.7.0.10"))).unwrap();
        block_on(
            ipam.allocate(
                &Add::new(Owner::new("c1", "eth0").unwrap(), "net")
                    .slot(Slot::any_of([ObjectName::new("used").unwrap()])),
            ),
        )
        .unwrap();
        Judge {
            ipam,
            api,
            namespace: "ipam-rs".into(),
        }
    }

    /// A review of `operation` on `object` (or, for DELETE, `old`), of our IPPool unless the
    /// object says another kind.
    fn review(operation: &str, name: &str, object: Option<Value>, old: Option<Value>) -> Value {
        let kind = object
            .as_ref()
            .or(old.as_ref())
            .and_then(|o| o["kind"].as_str())
            .unwrap_or("IPPool")
            .to_owned();
        let group = if kind.starts_with("Spider") {
            "spiderpool.spidernet.io"
        } else {
            "ipam.rs"
        };
        json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
                "kind": {"group": group, "version": "v1alpha1", "kind": kind},
                "resource": {"group": group, "version": "v1alpha1", "resource": "ippools"},
                "name": name,
                "operation": operation,
                "object": object,
                "oldObject": old,
            }
        })
    }

    fn pool(name: &str, spec: Value) -> Value {
        json!({"apiVersion": "ipam.rs/v1alpha1", "kind": "IPPool",
               "metadata": {"name": name, "uid": "u", "resourceVersion": "1"}, "spec": spec})
    }

    /// The decision on `review`, after checking the response document's shape.
    fn decide(judge: &Judge<MemoryStore>, review: Value) -> Decision {
        let (response, decision) = block_on(judge.review(review.to_string().as_bytes())).unwrap();
        assert_eq!(response["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(response["kind"], "AdmissionReview");
        let r = &response["response"];
        assert_eq!(r["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
        assert_eq!(r["allowed"], matches!(decision, Decision::Allowed(_)));
        if let Decision::Refused(_, message) | Decision::Failed(message) = &decision {
            assert_eq!(r["status"]["message"], *message);
        }
        decision
    }

    /// Asserts a refusal for `reason` whose message has every one of `words`.
    fn refused(decision: Decision, reason: Reason, words: &[&str]) {
        match decision {
            Decision::Refused(r, message) => {
                assert_eq!(r, reason, "{message}");
                for w in words {
                    assert!(message.contains(w), "{w:?} not in {message:?}");
                }
            }
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn an_object_ipamctl_refuses_is_refused_naming_the_field_and_the_value() {
        let j = judge(Api::IpamRs);
        let cases = [
            (
                pool(
                    "bad",
                    json!({"subnet": "10.9.0.5/24", "ips": ["10.9.0.10"]}),
                ),
                Reason::Invalid,
                vec![
                    r#"IPPool "bad""#,
                    "spec.subnet",
                    "10.9.0.5/24",
                    "10.9.0.0/24",
                ],
            ),
            (
                pool(
                    "bad",
                    json!({"subnet": "10.9.0.0/24", "ips": ["010.9.0.10"]}),
                ),
                Reason::Invalid,
                vec!["spec.ips[0]", "010.9.0.10"],
            ),
            (
                pool(
                    "bad",
                    json!({"subnet": "10.9.0.0/24", "ips": ["10.9.0.10"], "vlan": 5}),
                ),
                Reason::UnknownField,
                vec!["spec.vlan", "unknown field"],
            ),
        ];
        for (object, reason, words) in cases {
            refused(
                decide(&j, review("CREATE", "bad", Some(object), None)),
                reason,
                &words,
            );
        }
    }

    #[test]
    fn a_pool_is_refused_what_the_engine_refuses_against_the_stored_pools() {
        let j = judge(Api::IpamRs);
        // Overlap, naming both pools.
        let overlapping = pool(
            "other",
            json!({"subnet": "10.6.0.0/24", "ips": ["10.6.0.20-10.6.0.30"]}),
        );
        refused(
            decide(&j, review("CREATE", "other", Some(overlapping), None)),
            Reason::Overlap,
            &[
                r#"IPPool "other""#,
                "spec.ips",
                "10.6.0.20-10.6.0.30",
                r#"ippool "other" overlaps ippool "used" at 10.6.0.20"#,
            ],
        );
        // A pool that holds an address keeps its subnet, and so its family.
        for (subnet, ips) in [("10.8.0.0/24", "10.8.0.10"), ("fd00::/120", "fd00::10")] {
            let moved = pool("used", json!({"subnet": subnet, "ips": [ips]}));
            refused(
                decide(&j, review("UPDATE", "used", Some(moved), None)),
                Reason::SubnetInUse,
                &[
                    "spec.subnet",
                    subnet,
                    "cannot change from 10.6.0.0/24 while the pool holds 1 address(es)",
                ],
            );
        }
        // Accepted: an empty pool moved, a pool beside the others, a changed status (the
        // controller's counts), a pool's own spec rewritten.
        for (name, spec) in [
            (
                "empty",
                json!({"subnet": "10.8.0.0/24", "ips": ["10.8.0.10"]}),
            ),
            (
                "new",
                json!({"subnet": "10.6.0.0/24", "ips": ["10.6.0.21-10.6.0.30"]}),
            ),
            (
                "used",
                json!({"subnet": "10.6.0.0/24", "ips": ["10.6.0.10-10.6.0.25"]}),
            ),
        ] {
            let mut object = pool(name, spec);
            object["status"] = json!({"allocatedIPCount": "1"});
            assert_eq!(
                decide(&j, review("UPDATE", name, Some(object), None)),
                Decision::Allowed(None),
                "{name}"
            );
        }
    }

    #[test]
    fn a_pool_that_holds_addresses_is_deleted_only_when_forced() {
        let j = judge(Api::IpamRs);
        let used = pool(
            "used",
            json!({"subnet": "10.6.0.0/24", "ips": ["10.6.0.10-10.6.0.20"]}),
        );
        refused(
            decide(&j, review("DELETE", "used", None, Some(used.clone()))),
            Reason::PoolInUse,
            &[
                r#"IPPool "used""#,
                "holds 1 address(es)",
                "metadata.annotations[ipam.rs/force-delete]",
                "ipamctl delete --force",
            ],
        );
        let mut forced = used;
        forced["metadata"]["annotations"] = json!({"ipam.rs/force-delete": "true"});
        assert!(matches!(
            decide(&j, review("DELETE", "used", None, Some(forced))),
            Decision::Allowed(Some(w)) if w.contains("ipam.rs/force-delete")
        ));
        let empty = pool(
            "empty",
            json!({"subnet": "10.7.0.0/24", "ips": ["10.7.0.10"]}),
        );
        assert_eq!(
            decide(&j, review("DELETE", "empty", None, Some(empty))),
            Decision::Allowed(None)
        );
        // A ReservedIP is deleted as kubectl asks: it frees addresses, never takes them.
        let reserved = json!({"apiVersion": "ipam.rs/v1alpha1", "kind": "ReservedIP",
                              "metadata": {"name": "r"}, "spec": {"ips": ["10.6.0.10"]}});
        assert_eq!(
            decide(&j, review("DELETE", "r", None, Some(reserved))),
            Decision::Allowed(None)
        );
    }

    #[test]
    fn spiderpool_kinds_are_judged_where_the_installation_serves_them() {
        let spider = |spec: Value| {
            json!({"apiVersion": "spiderpool.spidernet.io/v2beta1", "kind": "SpiderIPPool",
                   "metadata": {"name": "sp"}, "spec": spec})
        };
        let j = judge(Api::Spiderpool);
        refused(
            decide(
                &j,
                review(
                    "CREATE",
                    "sp",
                    Some(spider(
                        json!({"subnet": "10.9.0.0/24", "ips": ["10.9.0.10"], "nodeName": ["node1"]}),
                    )),
                    None,
                ),
            ),
            Reason::Unimplemented,
            &[
                r#"SpiderIPPool "sp""#,
                "spec.nodeName",
                "node1",
                "not implemented by ipam-rs",
            ],
        );
        // Fields that say nothing pass, as the schema and ipamctl let them.
        let quiet = spider(
            json!({"subnet": "10.9.0.0/24", "ips": ["10.9.0.10"], "vlan": 0, "disable": false}),
        );
        assert_eq!(
            decide(&j, review("CREATE", "sp", Some(quiet), None)),
            Decision::Allowed(None)
        );
        let reserved = json!({"apiVersion": "spiderpool.spidernet.io/v2beta1", "kind": "SpiderReservedIP",
                              "metadata": {"name": "r"}, "spec": {"ips": ["10.9.0.256"]}});
        refused(
            decide(&j, review("CREATE", "r", Some(reserved), None)),
            Reason::Invalid,
            &["spec.ips[0]", "10.9.0.256"],
        );
        // A kind of the API this installation does not serve is not its to judge.
        let ours = judge(Api::IpamRs);
        let bad = spider(json!({"subnet": "10.9.0.5/24", "ips": ["10.9.0.10"]}));
        assert!(matches!(
            decide(&ours, review("CREATE", "sp", Some(bad), None)),
            Decision::Allowed(Some(_))
        ));
    }

    #[test]
    fn a_pool_of_another_store_namespace_and_a_status_write_are_not_judged_here() {
        let j = judge(Api::IpamRs);
        let mut foreign = pool(
            "other",
            json!({"subnet": "10.6.0.0/24", "ips": ["10.6.0.10"]}),
        );
        foreign["metadata"]["annotations"] = json!({"ipam.rs/namespace": "tenant-a"});
        assert!(
            matches!(decide(&j, review("CREATE", "other", Some(foreign), None)), Decision::Allowed(Some(w)) if w.contains("tenant-a"))
        );
        let mut status = review(
            "UPDATE",
            "used",
            Some(pool(
                "used",
                json!({"subnet": "10.8.0.0/24", "ips": ["10.8.0.10"]}),
            )),
            None,
        );
        status["request"]["subResource"] = json!("status");
        assert_eq!(decide(&j, status), Decision::Allowed(None));
    }

    #[test]
    fn a_body_that_is_no_review_is_an_error() {
        let j = judge(Api::IpamRs);
        assert!(block_on(j.review(b"{}"))
            .unwrap_err()
            .contains("without a request"));
        assert!(block_on(j.review(b"nonsense"))
            .unwrap_err()
            .starts_with("not an AdmissionReview"));
    }
}
