//! Prometheus metrics through `prometheus-client`: requests by endpoint and status and
//! their latency in label families, plus the cache's, pool's and database's state read
//! at each scrape, rendered in the text exposition format (0.0.4).
//!
//! A request reaches its counter and histogram through handles looked up in their family
//! once, not through `Family::get_or_create`, which hashes the labels (SipHash) and takes
//! the family's lock on every call: measured with `bench/instructions.py`, that cost 530
//! more instructions per cached request (13,797 against 13,268, +4 %), while the handles
//! cost about 30 (+0.2 %, within the run-to-run spread) over the hand-written renderer
//! this module replaced (bench/README.md, Profiling).

use std::sync::OnceLock;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hyper::StatusCode;
use prometheus_client::encoding::{
    EncodeLabelSet, EncodeLabelValue, LabelValueEncoder, prometheus_text,
};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::cache::DocumentCache;
use super::catch_up::Reconnections;
use super::endpoint::Endpoint;
use super::store::{PoolState, Store};

impl EncodeLabelValue for Endpoint {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        EncodeLabelValue::encode(&self.name(), encoder)
    }
}

/// The statuses the service answers with; any other is counted as `other`.
const STATUSES: [(u16, &str); 8] = [
    (200, "200"),
    (204, "204"),
    (304, "304"),
    (400, "400"),
    (404, "404"),
    (405, "405"),
    (500, "500"),
    (503, "503"),
];
/// Upper bounds of the latency buckets, in seconds (100 µs to 5 s).
const LATENCY_BOUNDS: [f64; 15] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    route: Endpoint,
    status: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouteLabels {
    route: Endpoint,
}

/// Request counters and latency histograms.
pub struct Metrics {
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    /// The families' members by endpoint and status slot (the last is `other`), each
    /// looked up in its family once, on first use, so a request neither hashes labels nor
    /// takes the family's lock, and only series that occurred are exposed.
    counters: [[OnceLock<Counter>; STATUSES.len() + 1]; Endpoint::COUNT],
    histograms: [OnceLock<Histogram>; Endpoint::COUNT],
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Family::default(),
            latency: Family::new_with_constructor(|| Histogram::new(LATENCY_BOUNDS)),
            counters: Default::default(),
            histograms: Default::default(),
        }
    }
}

impl Metrics {
    /// Counts one answered request.
    pub fn record(&self, endpoint: Endpoint, status: StatusCode, elapsed: Duration) {
        let slot = STATUSES
            .iter()
            .position(|(known, _)| *known == status.as_u16())
            .unwrap_or(STATUSES.len());
        self.counters[endpoint as usize][slot]
            .get_or_init(|| {
                let status = STATUSES.get(slot).map_or("other", |(_, label)| label);
                self.requests.get_or_create_owned(&RequestLabels {
                    route: endpoint,
                    status,
                })
            })
            .inc();
        self.histograms[endpoint as usize]
            .get_or_init(|| {
                self.latency
                    .get_or_create_owned(&RouteLabels { route: endpoint })
            })
            .observe(elapsed.as_secs_f64());
    }

    fn register(&self, registry: &mut Registry) {
        registry.register(
            "atelier_http_requests",
            "HTTP requests answered, by route and status",
            self.requests.clone(),
        );
        registry.register(
            "atelier_http_request_duration_seconds",
            "Time from request head to response head, by route",
            self.latency.clone(),
        );
    }
}

/// The whole exposition: requests, then cache, pool and database state.
pub async fn render(
    requests: &Metrics,
    cache: &DocumentCache,
    store: &Store,
    listening: bool,
    reconnections: &Reconnections,
    draining: bool,
) -> String {
    let mut registry = Registry::default();
    requests.register(&mut registry);
    let (hits, misses) = cache.hits_and_misses();
    let (entries, bytes) = cache.size().await;
    let PoolState {
        open: connections,
        reads_in_flight: in_flight,
        size: max,
    } = store.pool_state();
    let (batches, batched_reads) = store.batches();
    let counters = [
        (
            "atelier_cache_hits",
            "Document lookups answered from memory",
            hits,
        ),
        (
            "atelier_cache_misses",
            "Document lookups that read the database",
            misses,
        ),
        (
            "atelier_db_errors",
            "Failed database reads, checks and connection attempts",
            store.errors(),
        ),
        (
            "atelier_db_read_batches",
            "Statements that read documents by id, each carrying the reads gathered while the previous ones ran",
            batches,
        ),
        (
            "atelier_db_batched_reads",
            "Reads of documents by id carried by those statements",
            batched_reads,
        ),
        (
            "atelier_notify_catch_ups",
            "LISTEN connections that began by catching up on exactly what they missed",
            reconnections.catch_ups.load(Ordering::Relaxed),
        ),
        (
            "atelier_notify_cache_drops",
            "LISTEN connections that began by dropping the whole cache (the first, and any whose missed notices held a full rebuild)",
            reconnections.cache_drops.load(Ordering::Relaxed),
        ),
        (
            "atelier_notify_caught_up_notices",
            "Notices replayed from the notice log as LISTEN connections began",
            reconnections.caught_up_notices.load(Ordering::Relaxed),
        ),
    ];
    for (name, help, value) in counters {
        registry.register(name, help, ConstCounter::new(value));
    }
    let gauges: [(&str, &str, u64); 7] = [
        (
            "atelier_cache_entries",
            "Documents and absences held in the cache",
            entries,
        ),
        (
            "atelier_cache_bytes",
            "Weight of the cache's entries in bytes",
            bytes,
        ),
        (
            "atelier_db_pool_connections",
            "Open pooled database connections",
            connections.into(),
        ),
        (
            "atelier_db_reads_in_flight",
            "Database reads sent and not yet answered, over all connections",
            in_flight as u64,
        ),
        (
            "atelier_db_pool_max_connections",
            "Database connections the pool keeps open",
            max.into(),
        ),
        (
            "atelier_notify_listening",
            "1 while the LISTEN connection for invalidations is up",
            listening.into(),
        ),
        (
            "atelier_draining",
            "1 once shutdown has begun",
            draining.into(),
        ),
    ];
    for (name, help, value) in gauges {
        registry.register(name, help, ConstGauge::new(value));
    }
    let mut out = String::with_capacity(4096);
    prometheus_text::encode(&mut out, &registry).expect("writing to a String cannot fail");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_route_status_and_latency_bucket() {
        let metrics = Metrics::default();
        metrics.record(
            Endpoint::GetProduct,
            StatusCode::OK,
            Duration::from_micros(300),
        );
        metrics.record(Endpoint::GetProduct, StatusCode::OK, Duration::from_secs(9));
        metrics.record(Endpoint::Unmatched, StatusCode::IM_A_TEAPOT, Duration::ZERO);
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut out = String::new();
        prometheus_text::encode(&mut out, &registry).unwrap();
        assert!(
            out.contains("atelier_http_requests_total{route=\"get_product\",status=\"200\"} 2\n")
        );
        assert!(
            out.contains("atelier_http_requests_total{route=\"unmatched\",status=\"other\"} 1\n")
        );
        let name = "atelier_http_request_duration_seconds";
        assert!(out.contains(&format!(
            "{name}_bucket{{route=\"get_product\",le=\"0.00025\"}} 0\n"
        )));
        assert!(out.contains(&format!(
            "{name}_bucket{{route=\"get_product\",le=\"0.0005\"}} 1\n"
        )));
        assert!(out.contains(&format!(
            "{name}_bucket{{route=\"get_product\",le=\"5\"}} 1\n"
        )));
        assert!(out.contains(&format!(
            "{name}_bucket{{route=\"get_product\",le=\"+Inf\"}} 2\n"
        )));
        assert!(out.contains(&format!("{name}_sum{{route=\"get_product\"}} 9.0003\n")));
        assert!(out.contains(&format!("{name}_count{{route=\"get_product\"}} 2\n")));
        assert!(!out.contains("route=\"list_products\""));
    }
}
