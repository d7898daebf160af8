//! The agent's metrics, as Prometheus text on `/metrics`, and its health on `/healthz`
//! (`ipam-agent --metrics ADDRESS`; the DaemonSet's probes ask `/healthz`).
//!
//! | metric | type | what |
//! |---|---|---|
//! | `ipam_rs_agent_calls_total{command,code}` | counter | calls answered, by CNI command and outcome: `0`, else the CNI error code of the answer |
//! | `ipam_rs_agent_call_duration_seconds{command}` | histogram | one call, from its request read to its answer delivered |
//! | `ipam_rs_agent_queued_calls` | gauge | calls read and waiting for the call thread |
//! | `ipam_rs_agent_refusals_total` | counter | calls for a store this agent does not serve (the plugin made them itself) |
//! | `ipam_rs_agent_undelivered_total` | counter | answers the plugin did not take (gone, or could not write them) |
//! | `ipam_rs_agent_store_opens_total{result}` | counter | openings of the store (`opened`, `failed`) |
//! | `ipam_rs_agent_store_open` | gauge | 1 while the store is open |
//! | `ipam_rs_agent_call_api_reads{command}` | histogram | requests of one call to the API server that change nothing (Kubernetes store) |
//! | `ipam_rs_agent_call_api_writes{command}` | histogram | requests of one call that write |
//! | `ipam_rs_agent_api_conflicts_total` | counter | writes the API server refused as conflicting (409) |
//!
//! The names share the controller's prefix (`ipam_rs_`) and crate (prometheus-client).
//! A histogram's `_sum` over its `_count` is the mean per call: requests per ADD.
//!
//! Health ([`Health`]): the agent is healthy while its call thread runs, no call has run for
//! longer than [`STUCK_CALL`], and its socket is still at its path (a socket removed from
//! under a running agent reaches no plugin: a restart makes a new one).

use std::os::unix::fs::FileTypeExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// A call that has run this long makes the agent unhealthy: every bound of a call (the
/// embedded store's lock wait, the Kubernetes store's request deadlines) is far shorter.
pub const STUCK_CALL: Duration = Duration::from_secs(120);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabel {
    command: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommandLabel {
    command: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

/// Every metric of the agent, registered once, and its health.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    calls: Family<CallLabel, Counter>,
    duration: Family<CommandLabel, Histogram, fn() -> Histogram>,
    queued: Gauge,
    refusals: Counter,
    undelivered: Counter,
    store_opens: Family<ResultLabel, Counter>,
    store_open: Gauge,
    api_reads: Family<CommandLabel, Histogram, fn() -> Histogram>,
    api_writes: Family<CommandLabel, Histogram, fn() -> Histogram>,
    api_conflicts: Counter,
    /// The agent's health.
    pub health: Health,
}

fn requests_histogram() -> Histogram {
    Histogram::new([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 12.0, 16.0, 32.0])
}

fn call_histogram() -> Histogram {
    // 0.25 ms to about 8 s.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Metrics {
        let mut registry = Registry::with_prefix("ipam_rs_agent");
        let m = Metrics {
            calls: Family::default(),
            duration: Family::new_with_constructor(call_histogram),
            queued: Gauge::default(),
            refusals: Counter::default(),
            undelivered: Counter::default(),
            store_opens: Family::default(),
            store_open: Gauge::default(),
            api_reads: Family::new_with_constructor(requests_histogram),
            api_writes: Family::new_with_constructor(requests_histogram),
            api_conflicts: Counter::default(),
            health: Health::default(),
            registry: Registry::default(),
        };
        registry.register(
            "calls",
            "Calls answered, by CNI command and code (0: success)",
            m.calls.clone(),
        );
        registry.register(
            "call_duration_seconds",
            "Duration of one call, from its request read to its answer delivered",
            m.duration.clone(),
        );
        registry.register(
            "queued_calls",
            "Calls read and waiting for the call thread",
            m.queued.clone(),
        );
        registry.register(
            "refusals",
            "Calls for a store this agent does not serve",
            m.refusals.clone(),
        );
        registry.register(
            "undelivered",
            "Answers the plugin did not take",
            m.undelivered.clone(),
        );
        registry.register(
            "store_opens",
            "Openings of the store, by result (opened, failed)",
            m.store_opens.clone(),
        );
        registry.register(
            "store_open",
            "1 while the store is open",
            m.store_open.clone(),
        );
        registry.register(
            "call_api_reads",
            "Requests of one call to the API server that change nothing",
            m.api_reads.clone(),
        );
        registry.register(
            "call_api_writes",
            "Requests of one call to the API server that write",
            m.api_writes.clone(),
        );
        registry.register(
            "api_conflicts",
            "Writes the API server refused as conflicting (409)",
            m.api_conflicts.clone(),
        );
        Metrics { registry, ..m }
    }
}

impl Metrics {
    /// A call answered: its command (as [`command_label`] names it), its answer's CNI code
    /// (0 for success) and how long it took.
    pub fn call(&self, command: &str, code: u64, took: Duration) {
        let command = command.to_owned();
        self.calls
            .get_or_create(&CallLabel {
                command: command.clone(),
                code: code.to_string(),
            })
            .inc();
        self.duration
            .get_or_create(&CommandLabel { command })
            .observe(took.as_secs_f64());
    }

    /// The requests one call of `command` sent to the store's server (a store that has one).
    pub fn api_requests(&self, command: &str, requests: &ipam_store::RequestCounts) {
        let label = CommandLabel {
            command: command.to_owned(),
        };
        self.api_reads
            .get_or_create(&label)
            .observe(requests.reads as f64);
        self.api_writes
            .get_or_create(&label)
            .observe(requests.writes as f64);
        self.api_conflicts.inc_by(requests.conflicts);
    }

    /// A call read, now waiting for the call thread.
    pub fn queued(&self) {
        self.queued.inc();
    }

    /// A waiting call taken by the call thread.
    pub fn dequeued(&self) {
        self.queued.dec();
    }

    /// A call for a store this agent does not serve.
    pub fn refused(&self) {
        self.refusals.inc();
    }

    /// An answer the plugin did not take.
    pub fn undelivered(&self) {
        self.undelivered.inc();
    }

    /// An opening of the store, and whether it is open now.
    pub fn store_opened(&self, opened: bool) {
        let result = if opened { "opened" } else { "failed" };
        self.store_opens
            .get_or_create(&ResultLabel {
                result: result.to_owned(),
            })
            .inc();
        self.store_open.set(i64::from(opened));
    }

    /// The store closed (idle).
    pub fn store_closed(&self) {
        self.store_open.set(0);
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)
            .expect("writing to a String does not fail");
        text
    }
}

/// The `command` label of a call whose `CNI_COMMAND` is `raw`: the command's name, or
/// `invalid` (so that what a caller sends cannot make new series).
pub fn command_label(raw: Option<&str>) -> &'static str {
    match raw {
        Some("ADD") => "ADD",
        Some("DEL") => "DEL",
        Some("CHECK") => "CHECK",
        Some("GC") => "GC",
        Some("STATUS") => "STATUS",
        Some("VERSION") => "VERSION",
        _ => "invalid",
    }
}

/// The CNI code of an answer: 0 for a success, else its error object's `code` (an answer
/// without one counts as 999, the CNI's "unknown").
pub fn answer_code(exit_code: i32, stdout: &str) -> u64 {
    if exit_code == 0 {
        return 0;
    }
    serde_json::from_str::<serde_json::Value>(stdout)
        .ok()
        .and_then(|v| v.get("code").and_then(serde_json::Value::as_u64))
        .unwrap_or(999)
}

/// What `/healthz` answers from: the call thread's state, kept by the call thread.
#[derive(Debug)]
pub struct Health {
    started: Instant,
    /// Milliseconds after `started` at which the running call began, plus one; 0: no call.
    call_began: AtomicU64,
    stopped: AtomicBool,
}

impl Default for Health {
    fn default() -> Health {
        Health {
            started: Instant::now(),
            call_began: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
        }
    }
}

impl Health {
    /// The call thread begins a call.
    pub fn call_begins(&self) {
        let now = self.started.elapsed().as_millis() as u64 + 1;
        self.call_began.store(now, Ordering::Relaxed);
    }

    /// The call thread ended its call.
    pub fn call_ends(&self) {
        self.call_began.store(0, Ordering::Relaxed);
    }

    /// The call thread stopped (it never starts again).
    pub fn stopped(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }

    /// `Ok` when healthy, else why not; `socket` is where the agent serves.
    pub fn check(&self, socket: &std::path::Path) -> Result<(), String> {
        if self.stopped.load(Ordering::Relaxed) {
            return Err("the call thread stopped".to_owned());
        }
        let began = self.call_began.load(Ordering::Relaxed);
        if began != 0 {
            let running = self
                .started
                .elapsed()
                .saturating_sub(Duration::from_millis(began - 1));
            if running > STUCK_CALL {
                return Err(format!(
                    "one call has run for {} s (more than {} s)",
                    running.as_secs(),
                    STUCK_CALL.as_secs()
                ));
            }
        }
        match std::fs::symlink_metadata(socket) {
            Ok(meta) if meta.file_type().is_socket() => Ok(()),
            Ok(_) => Err(format!("{} is no longer a socket", socket.display())),
            Err(e) => Err(format!("the socket {}: {e}", socket.display())),
        }
    }
}

/// Serves `/metrics` and `/healthz` on `address` from a thread of its own, for ever, and
/// returns the address bound (port 0 becomes the port chosen). `socket` is the agent's
/// socket, which `/healthz` checks is still there.
///
/// The address is bound before this returns: an address in use is an error here, where the
/// agent can still refuse to start.
pub fn serve(address: &str, metrics: Arc<Metrics>, socket: PathBuf) -> Result<String, String> {
    let server =
        tiny_http::Server::http(address).map_err(|e| format!("--metrics {address}: {e}"))?;
    let bound = server.server_addr().to_string();
    std::thread::spawn(move || {
        let header = |text: &str| {
            tiny_http::Header::from_bytes(&b"Content-Type"[..], text.as_bytes())
                .expect("a valid header")
        };
        for request in server.incoming_requests() {
            let response = match (request.method(), request.url()) {
                (tiny_http::Method::Get, "/metrics") => {
                    tiny_http::Response::from_string(metrics.render())
                        .with_header(header("text/plain; version=0.0.4; charset=utf-8"))
                }
                (tiny_http::Method::Get, "/healthz") => match metrics.health.check(&socket) {
                    Ok(()) => tiny_http::Response::from_string("ok\n"),
                    Err(why) => {
                        tiny_http::Response::from_string(format!("{why}\n")).with_status_code(503)
                    }
                }
                .with_header(header("text/plain")),
                _ => tiny_http::Response::from_string("not found: /metrics or /healthz\n")
                    .with_status_code(404),
            };
            // A scraper that went away is no error of ours.
            let _ = request.respond(response);
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_counted_by_command_and_code_and_timed_by_command() {
        let m = Metrics::default();
        m.call("ADD", 0, Duration::from_millis(2));
        m.call("ADD", 0, Duration::from_millis(3));
        m.call("ADD", 11, Duration::from_millis(40));
        m.call("DEL", 0, Duration::from_millis(1));
        let text = m.render();
        for line in [
            "ipam_rs_agent_calls_total{command=\"ADD\",code=\"0\"} 2",
            "ipam_rs_agent_calls_total{command=\"ADD\",code=\"11\"} 1",
            "ipam_rs_agent_calls_total{command=\"DEL\",code=\"0\"} 1",
            "ipam_rs_agent_call_duration_seconds_count{command=\"ADD\"} 3",
            "ipam_rs_agent_call_duration_seconds_count{command=\"DEL\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        // Buckets double from 0.25 ms: 2 ms falls in the 2 ms one, 3 ms in the 4 ms one.
        for line in [
            "ipam_rs_agent_call_duration_seconds_bucket{command=\"ADD\",le=\"0.002\"} 1",
            "ipam_rs_agent_call_duration_seconds_bucket{command=\"ADD\",le=\"0.004\"} 2",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
    }

    #[test]
    fn api_requests_are_observed_per_call_and_conflicts_summed() {
        let m = Metrics::default();
        let call = |reads, writes, conflicts| ipam_store::RequestCounts {
            reads,
            writes,
            conflicts,
        };
        m.api_requests("ADD", &call(2, 2, 0));
        m.api_requests("ADD", &call(5, 3, 1));
        m.api_requests("DEL", &call(0, 2, 0));
        let text = m.render();
        for line in [
            "ipam_rs_agent_call_api_reads_sum{command=\"ADD\"} 7.0",
            "ipam_rs_agent_call_api_reads_count{command=\"ADD\"} 2",
            "ipam_rs_agent_call_api_reads_bucket{command=\"ADD\",le=\"2\"} 1",
            "ipam_rs_agent_call_api_writes_sum{command=\"ADD\"} 5.0",
            "ipam_rs_agent_call_api_writes_sum{command=\"DEL\"} 2.0",
            "ipam_rs_agent_call_api_reads_bucket{command=\"DEL\",le=\"0\"} 1",
            "ipam_rs_agent_api_conflicts_total 1",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
    }

    #[test]
    fn labels_come_from_a_closed_set_and_codes_from_the_answer() {
        assert_eq!(command_label(Some("ADD")), "ADD");
        assert_eq!(command_label(Some("add")), "invalid");
        assert_eq!(command_label(Some("ADD\nx")), "invalid");
        assert_eq!(command_label(None), "invalid");
        assert_eq!(answer_code(0, "{\"ips\":[]}"), 0);
        assert_eq!(answer_code(1, "{\"code\":11,\"msg\":\"x\"}\n"), 11);
        assert_eq!(answer_code(1, ""), 999);
    }

    #[test]
    fn the_store_gauge_follows_openings_and_closings() {
        let m = Metrics::default();
        let has = |text: &str, line: &str| text.lines().any(|l| l == line);
        m.store_opened(false);
        let text = m.render();
        assert!(has(&text, "ipam_rs_agent_store_open 0"), "{text}");
        assert!(
            has(
                &text,
                "ipam_rs_agent_store_opens_total{result=\"failed\"} 1"
            ),
            "{text}"
        );
        m.store_opened(true);
        assert!(has(&m.render(), "ipam_rs_agent_store_open 1"));
        m.store_closed();
        assert!(has(&m.render(), "ipam_rs_agent_store_open 0"));
    }

    #[test]
    fn health_needs_the_socket_the_call_thread_and_no_stuck_call() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("agent.sock");
        let health = Health::default();
        let missing = health.check(&socket).unwrap_err();
        assert!(missing.starts_with("the socket "), "{missing}");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        assert_eq!(health.check(&socket), Ok(()));
        health.call_begins();
        assert_eq!(health.check(&socket), Ok(()), "a call that just began");
        // A call that began longer ago than STUCK_CALL.
        let old = Health {
            started: Instant::now() - STUCK_CALL - Duration::from_secs(5),
            ..Health::default()
        };
        old.call_begins();
        assert_eq!(old.check(&socket), Ok(()), "its call began now");
        old.call_began.store(1, Ordering::Relaxed); // began at `started`
        let stuck = old.check(&socket).unwrap_err();
        assert!(stuck.starts_with("one call has run for 12"), "{stuck}");
        old.call_ends();
        assert_eq!(old.check(&socket), Ok(()));
        health.stopped();
        assert_eq!(
            health.check(&socket),
            Err("the call thread stopped".to_owned())
        );
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert!(Health::default()
            .check(&file)
            .unwrap_err()
            .ends_with("is no longer a socket"));
    }
}
