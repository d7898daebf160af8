//! The controller's metrics, as Prometheus text on `/metrics`, and its health on `/healthz`.
//!
//! | metric | type | what |
//! |---|---|---|
//! | `ipam_rs_pool_total_addresses{pool}` | gauge | addresses the pool lists (`totalIPCount`) |
//! | `ipam_rs_pool_reserved_addresses{pool}` | gauge | of those, kept out by ReservedIPs and exclusions |
//! | `ipam_rs_pool_allocated_addresses{pool}` | gauge | held now |
//! | `ipam_rs_pool_available_addresses{pool}` | gauge | what ADD can still hand out |
//! | `ipam_rs_leaked_addresses` | gauge | allocations that are leaks at the last sync, due or not |
//! | `ipam_rs_leaks_released_total{reason}` | counter | leaks released (`podGone`, `otherPod`, `finished`, `nodeGone`) |
//! | `ipam_rs_leaks_kept_by_fresh_look_total` | counter | due leaks a fresh look found held |
//! | `ipam_rs_sync_duration_seconds` | histogram | one sync, reads to last write |
//! | `ipam_rs_sync_errors_total` | counter | syncs that failed (nothing judged, nothing released) |
//! | `ipam_rs_controller_leader` | gauge | 1 on the replica that leads |
//! | `ipam_rs_webhook_requests_total{decision}` | counter | admission reviews answered (`allowed`, `refused`, `failed`) |
//! | `ipam_rs_webhook_refusals_total{reason}` | counter | objects refused, by reason (`invalid`, `unknownField`, `unimplemented`, `overlap`, `subnetInUse`, `poolInUse`) |
//! | `ipam_rs_webhook_errors_total` | counter | requests that were no review (answered 400) |
//!
//! Counts are gauges of `f64`: an IPv6 pool counts past what an `i64` holds. The pool gauges
//! come from the leader only (a follower's are empty), so a sum over replicas is the count.
//! The webhook's come from every replica (each serves it).

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use ipam_core::PoolCounts;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// The label of the pool gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabel {
    pool: String,
}

/// The label of the webhook's answers.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabel {
    decision: String,
}

/// The label of released leaks and of the webhook's refusals.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

/// The label of swept leftovers.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

type CountGauge = Family<PoolLabel, Gauge<f64, AtomicU64>>;

/// Every metric of the controller, registered once.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pool_total: CountGauge,
    pool_reserved: CountGauge,
    pool_allocated: CountGauge,
    pool_available: CountGauge,
    leaked: Gauge,
    released: Family<ReasonLabel, Counter>,
    kept_by_fresh_look: Counter,
    statefulset_waiting: Gauge,
    statefulset_kept: Family<ReasonLabel, Counter>,
    swept: Family<KindLabel, Counter>,
    sync_duration: Histogram,
    sync_errors: Counter,
    leader: Gauge,
    webhook_requests: Family<DecisionLabel, Counter>,
    webhook_refusals: Family<ReasonLabel, Counter>,
    webhook_errors: Counter,
}

impl Default for Metrics {
    fn default() -> Metrics {
        let mut registry = Registry::with_prefix("ipam_rs");
        let m = Metrics {
            pool_total: CountGauge::default(),
            pool_reserved: CountGauge::default(),
            pool_allocated: CountGauge::default(),
            pool_available: CountGauge::default(),
            leaked: Gauge::default(),
            released: Family::default(),
            kept_by_fresh_look: Counter::default(),
            statefulset_waiting: Gauge::default(),
            statefulset_kept: Family::default(),
            swept: Family::default(),
            // 10 ms to about 80 s.
            sync_duration: Histogram::new(exponential_buckets(0.01, 2.0, 14)),
            sync_errors: Counter::default(),
            leader: Gauge::default(),
            webhook_requests: Family::default(),
            webhook_refusals: Family::default(),
            webhook_errors: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "pool_total_addresses",
            "Addresses the pool lists",
            m.pool_total.clone(),
        );
        registry.register(
            "pool_reserved_addresses",
            "Addresses of the pool kept out by ReservedIPs and exclusions",
            m.pool_reserved.clone(),
        );
        registry.register(
            "pool_allocated_addresses",
            "Addresses of the pool held now",
            m.pool_allocated.clone(),
        );
        registry.register(
            "pool_available_addresses",
            "Addresses of the pool ADD can still hand out",
            m.pool_available.clone(),
        );
        registry.register(
            "leaked_addresses",
            "Allocations that were leaks at the last sync, due for release or not",
            m.leaked.clone(),
        );
        registry.register(
            "leaks_released",
            "Leaked addresses released, by reason",
            m.released.clone(),
        );
        registry.register(
            "leaks_kept_by_fresh_look",
            "Leaks due for release that a fresh look at their Pod found held",
            m.kept_by_fresh_look.clone(),
        );
        registry.register(
            "statefulset_waiting_addresses",
            "Addresses kept for StatefulSet Pods' identities at the last sync, held by no sandbox",
            m.statefulset_waiting.clone(),
        );
        registry.register(
            "statefulset_kept_leaks",
            "Leaked sandboxes of StatefulSet Pods whose address was kept for the Pod's next sandbox, by reason",
            m.statefulset_kept.clone(),
        );
        registry.register(
            "leftovers_swept",
            "What crashes left behind, swept: stale owner index entries (kind ownerEntry) and empty blocks (emptyBlock)",
            m.swept.clone(),
        );
        registry.register(
            "sync_duration_seconds",
            "Duration of one sync",
            m.sync_duration.clone(),
        );
        registry.register(
            "sync_errors",
            "Syncs that failed: nothing judged, nothing released",
            m.sync_errors.clone(),
        );
        registry.register(
            "controller_leader",
            "1 on the replica that holds the Lease",
            m.leader.clone(),
        );
        registry.register(
            "webhook_requests",
            "Admission reviews the webhook answered, by decision",
            m.webhook_requests.clone(),
        );
        registry.register(
            "webhook_refusals",
            "Objects the webhook refused, by reason",
            m.webhook_refusals.clone(),
        );
        registry.register(
            "webhook_errors",
            "Requests to the webhook that were no admission review",
            m.webhook_errors.clone(),
        );
        Metrics { registry, ..m }
    }
}

impl Metrics {
    /// The pools' counts of one sync: every pool's gauges, and none of a pool that is gone.
    pub fn pools(&self, counts: &[PoolCounts]) {
        for family in [
            &self.pool_total,
            &self.pool_reserved,
            &self.pool_allocated,
            &self.pool_available,
        ] {
            family.clear();
        }
        for c in counts {
            let label = PoolLabel {
                pool: c.pool.to_string(),
            };
            self.pool_total.get_or_create(&label).set(c.total as f64);
            self.pool_reserved
                .get_or_create(&label)
                .set(c.reserved as f64);
            self.pool_allocated
                .get_or_create(&label)
                .set(c.allocated as f64);
            self.pool_available
                .get_or_create(&label)
                .set(c.available as f64);
        }
    }

    /// One sync's end: how long it took, how many leaks it saw.
    pub fn synced(&self, took: Duration, leaks: usize) {
        self.sync_duration.observe(took.as_secs_f64());
        self.leaked.set(leaks as i64);
    }

    /// A sync that failed.
    pub fn sync_failed(&self, took: Duration) {
        self.sync_duration.observe(took.as_secs_f64());
        self.sync_errors.inc();
    }

    /// A leak released, with its reason's code.
    pub fn released(&self, reason: &str) {
        self.released
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// A leaked StatefulSet Pod's sandbox whose address now waits for the Pod's next one.
    pub fn kept_for_statefulset(&self, reason: &str) {
        self.statefulset_kept
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Leftovers of crashes swept, of one kind (`ownerEntry`, `emptyBlock`).
    pub fn swept(&self, kind: &str, n: usize) {
        self.swept
            .get_or_create(&KindLabel {
                kind: kind.to_owned(),
            })
            .inc_by(n as u64);
    }

    /// How many addresses wait for StatefulSet Pods at this sync.
    pub fn statefulset_waiting(&self, addresses: usize) {
        self.statefulset_waiting.set(addresses as i64);
    }

    /// A due leak that a fresh look kept.
    pub fn kept_by_fresh_look(&self) {
        self.kept_by_fresh_look.inc();
    }

    /// Whether this replica leads; a follower shows no pool counts.
    pub fn leads(&self, leads: bool) {
        self.leader.set(i64::from(leads));
        if !leads {
            self.pools(&[]);
            self.leaked.set(0);
            self.statefulset_waiting.set(0);
        }
    }

    /// One review answered.
    pub fn webhook_decided(&self, decision: &super::webhook::Decision) {
        use super::webhook::Decision;
        let label = match decision {
            Decision::Allowed(_) => "allowed",
            Decision::Refused(reason, _) => {
                self.webhook_refusals
                    .get_or_create(&ReasonLabel {
                        reason: reason.code().to_owned(),
                    })
                    .inc();
                "refused"
            }
            Decision::Failed(_) => "failed",
        };
        self.webhook_requests
            .get_or_create(&DecisionLabel {
                decision: label.to_owned(),
            })
            .inc();
    }

    /// A request to the webhook that was no review.
    pub fn webhook_error(&self) {
        self.webhook_errors.inc();
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)
            .expect("writing to a String does not fail");
        text
    }
}

/// Serves `/metrics` and `/healthz` on `address` from a thread of its own, for ever; an
/// address in use (the other replica on the same node, both on its host network) is tried
/// again every 10 s. `healthy` answers `/healthz`: 200 when true, 503 otherwise.
pub fn serve(
    address: String,
    metrics: Arc<Metrics>,
    healthy: impl Fn() -> bool + Send + 'static,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut said = false;
        let server = loop {
            match tiny_http::Server::http(address.as_str()) {
                Ok(s) => break s,
                Err(e) => {
                    if !said {
                        eprintln!("ipam-controller: cannot serve metrics on {address} ({e}); trying again every 10 s");
                        said = true;
                    }
                    std::thread::sleep(Duration::from_secs(10));
                }
            }
        };
        eprintln!("ipam-controller: metrics on http://{address}/metrics, health on /healthz");
        for request in server.incoming_requests() {
            let header = |text: &str| {
                tiny_http::Header::from_bytes(&b"Content-Type"[..], text.as_bytes())
                    .expect("a valid header")
            };
            let response = match (request.method(), request.url()) {
                (tiny_http::Method::Get, "/metrics") => {
                    tiny_http::Response::from_string(metrics.render())
                        .with_header(header("text/plain; version=0.0.4; charset=utf-8"))
                }
                (tiny_http::Method::Get, "/healthz") if healthy() => {
                    tiny_http::Response::from_string("ok\n").with_header(header("text/plain"))
                }
                (tiny_http::Method::Get, "/healthz") => tiny_http::Response::from_string(
                    "the Lease has not been read or written for 30 s\n",
                )
                .with_status_code(503),
                _ => tiny_http::Response::from_string("not found: /metrics or /healthz\n")
                    .with_status_code(404),
            };
            // A scraper that went away is no error of ours.
            let _ = request.respond(response);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipam_core::ObjectName;

    fn counts(pool: &str, total: u128, allocated: u128) -> PoolCounts {
        PoolCounts {
            pool: ObjectName::new(pool).unwrap(),
            total,
            reserved: 2,
            reserved_by_network: 0,
            allocated,
            available: total - 2 - allocated,
        }
    }

    #[test]
    fn the_text_names_every_metric_with_its_unit_and_pool() {
        let m = Metrics::default();
        m.leads(true);
        m.pools(&[counts("test-ippool", 3, 1), counts("v6", 1 << 64, 0)]);
        m.synced(Duration::from_millis(40), 2);
        m.released("podGone");
        m.released("podGone");
        m.kept_by_fresh_look();
        use crate::controller::webhook::{Decision, Reason};
        m.webhook_decided(&Decision::Refused(Reason::Overlap, "x".into()));
        m.webhook_decided(&Decision::Allowed(None));
        m.webhook_error();
        let text = m.render();
        for line in [
            "ipam_rs_pool_total_addresses{pool=\"test-ippool\"} 3.0",
            "ipam_rs_pool_available_addresses{pool=\"test-ippool\"} 0.0",
            "ipam_rs_pool_allocated_addresses{pool=\"test-ippool\"} 1.0",
            // 2^64, as f64 text.
            "ipam_rs_pool_total_addresses{pool=\"v6\"} 18446744073709553000.0",
            "ipam_rs_leaked_addresses 2",
            "ipam_rs_leaks_released_total{reason=\"podGone\"} 2",
            "ipam_rs_leaks_kept_by_fresh_look_total 1",
            "ipam_rs_sync_duration_seconds_count 1",
            "ipam_rs_sync_errors_total 0",
            "ipam_rs_controller_leader 1",
            "ipam_rs_webhook_requests_total{decision=\"refused\"} 1",
            "ipam_rs_webhook_requests_total{decision=\"allowed\"} 1",
            "ipam_rs_webhook_refusals_total{reason=\"overlap\"} 1",
            "ipam_rs_webhook_errors_total 1",
            "# TYPE ipam_rs_sync_duration_seconds histogram",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "no line {line:?} in:\n{text}"
            );
        }
        // A pool that is gone leaves no series behind; a follower shows none.
        m.pools(&[counts("test-ippool", 3, 0)]);
        assert!(!m.render().contains("pool=\"v6\""));
        m.leads(false);
        let text = m.render();
        assert!(!text.contains("pool=\"test-ippool\""), "{text}");
        assert!(
            text.lines().any(|l| l == "ipam_rs_controller_leader 0"),
            "{text}"
        );
    }

    #[test]
    fn the_endpoint_serves_metrics_and_health() {
        let metrics = Arc::new(Metrics::default());
        metrics.leads(true);
        // A free port: bind, read it, let it go.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let healthy = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let h = healthy.clone();
        serve(format!("127.0.0.1:{port}"), metrics, move || {
            h.load(std::sync::atomic::Ordering::SeqCst)
        });
        // The status code of an answer.
        let status =
            |answer: String| -> String { answer.split(' ').nth(1).unwrap_or_default().to_owned() };
        let get = |path: &str| -> String {
            use std::io::{Read, Write};
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            let mut stream = loop {
                match std::net::TcpStream::connect(("127.0.0.1", port)) {
                    Ok(s) => break s,
                    Err(e) if std::time::Instant::now() < deadline => {
                        let _ = e;
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    Err(e) => panic!("the endpoint does not answer: {e}"),
                }
            };
            write!(stream, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
            let mut answer = String::new();
            stream.read_to_string(&mut answer).unwrap();
            answer
        };
        let metrics = get("/metrics");
        assert_eq!(status(metrics.clone()), "200", "{metrics}");
        assert!(metrics.contains("ipam_rs_controller_leader 1"), "{metrics}");
        assert!(
            metrics.contains("Content-Type: text/plain; version=0.0.4"),
            "{metrics}"
        );
        assert_eq!(status(get("/healthz")), "200");
        healthy.store(false, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(status(get("/healthz")), "503");
        assert_eq!(status(get("/other")), "404");
    }
}
