//! Prometheus metrics: requests by endpoint and status and their latency, counted in
//! fixed arrays of atomics so recording allocates nothing, plus the cache's, pool's and
//! database's state, rendered in the text exposition format on demand.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hyper::StatusCode;

use super::AppState;

/// What a request was routed to: the `route` label of its samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    ListProducts,
    GetProduct,
    GetProductStyles,
    GetRelatedProducts,
    Healthz,
    Readyz,
    Metrics,
    /// A path the service does not have.
    Unmatched,
}

impl Endpoint {
    const ALL: [Endpoint; 8] = [
        Endpoint::ListProducts,
        Endpoint::GetProduct,
        Endpoint::GetProductStyles,
        Endpoint::GetRelatedProducts,
        Endpoint::Healthz,
        Endpoint::Readyz,
        Endpoint::Metrics,
        Endpoint::Unmatched,
    ];

    /// The label value.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::ListProducts => "list_products",
            Endpoint::GetProduct => "get_product",
            Endpoint::GetProductStyles => "get_product_styles",
            Endpoint::GetRelatedProducts => "get_related_products",
            Endpoint::Healthz => "healthz",
            Endpoint::Readyz => "readyz",
            Endpoint::Metrics => "metrics",
            Endpoint::Unmatched => "unmatched",
        }
    }
}

/// The statuses the service answers with; any other is counted as `other`.
const STATUSES: [u16; 7] = [200, 304, 400, 404, 405, 500, 503];
/// Upper bounds of the latency buckets, in microseconds (100 µs to 5 s).
const LATENCY_BOUNDS_US: [u64; 15] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000,
];

const ENDPOINTS: usize = Endpoint::ALL.len();

/// Request counters and latency histograms.
pub struct Metrics {
    /// Per endpoint, per status slot (the last slot is `other`).
    requests: [[AtomicU64; STATUSES.len() + 1]; ENDPOINTS],
    latency: [Histogram; ENDPOINTS],
}

struct Histogram {
    /// Per bucket, not cumulative; the last one is `+Inf`.
    buckets: [AtomicU64; LATENCY_BOUNDS_US.len() + 1],
    sum_us: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
            latency: std::array::from_fn(|_| Histogram {
                buckets: std::array::from_fn(|_| AtomicU64::new(0)),
                sum_us: AtomicU64::new(0),
            }),
        }
    }
}

impl Metrics {
    /// Counts one answered request.
    pub fn record(&self, endpoint: Endpoint, status: StatusCode, elapsed: Duration) {
        let status_slot = STATUSES
            .iter()
            .position(|&known| known == status.as_u16())
            .unwrap_or(STATUSES.len());
        self.requests[endpoint as usize][status_slot].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let histogram = &self.latency[endpoint as usize];
        let bucket = LATENCY_BOUNDS_US
            .iter()
            .position(|&bound| micros <= bound)
            .unwrap_or(LATENCY_BOUNDS_US.len());
        histogram.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        histogram.sum_us.fetch_add(micros, Ordering::Relaxed);
    }

    fn write_requests(&self, out: &mut String) {
        header(
            out,
            "atelier_http_requests_total",
            "counter",
            "HTTP requests answered, by route and status.",
        );
        for endpoint in Endpoint::ALL {
            for (slot, count) in self.requests[endpoint as usize].iter().enumerate() {
                let count = count.load(Ordering::Relaxed);
                if count == 0 {
                    continue;
                }
                let route = endpoint.name();
                match STATUSES.get(slot) {
                    Some(status) => writeln!(
                        out,
                        "atelier_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {count}"
                    ),
                    None => writeln!(
                        out,
                        "atelier_http_requests_total{{route=\"{route}\",status=\"other\"}} {count}"
                    ),
                }
                .expect("writing to a String cannot fail");
            }
        }
        let name = "atelier_http_request_duration_seconds";
        header(
            out,
            name,
            "histogram",
            "Time from request head to response head, by route.",
        );
        for endpoint in Endpoint::ALL {
            let histogram = &self.latency[endpoint as usize];
            let counts: Vec<u64> = histogram
                .buckets
                .iter()
                .map(|bucket| bucket.load(Ordering::Relaxed))
                .collect();
            let total: u64 = counts.iter().sum();
            if total == 0 {
                continue;
            }
            let route = endpoint.name();
            let mut cumulative = 0;
            for (bound, count) in LATENCY_BOUNDS_US.iter().zip(&counts) {
                cumulative += count;
                let le = *bound as f64 / 1e6;
                writeln!(
                    out,
                    "{name}_bucket{{route=\"{route}\",le=\"{le}\"}} {cumulative}"
                )
                .expect("writing to a String cannot fail");
            }
            let sum = histogram.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
            writeln!(
                out,
                "{name}_bucket{{route=\"{route}\",le=\"+Inf\"}} {total}\n\
                 {name}_sum{{route=\"{route}\"}} {sum}\n\
                 {name}_count{{route=\"{route}\"}} {total}"
            )
            .expect("writing to a String cannot fail");
        }
    }
}

/// The whole exposition: requests, then cache, pool and database state.
pub async fn render(state: &AppState) -> String {
    let mut out = String::with_capacity(4096);
    state.metrics.write_requests(&mut out);
    let (hits, misses) = state.cache.hits_and_misses();
    let (entries, bytes) = state.cache.size().await;
    let (connections, in_flight, max) = state.store.pool_state();
    let samples: [(&str, &str, &str, u64); 10] = [
        (
            "atelier_cache_hits_total",
            "counter",
            "Document lookups answered from memory.",
            hits,
        ),
        (
            "atelier_cache_misses_total",
            "counter",
            "Document lookups that read the database.",
            misses,
        ),
        (
            "atelier_cache_entries",
            "gauge",
            "Documents and absences held in the cache.",
            entries,
        ),
        (
            "atelier_cache_bytes",
            "gauge",
            "Weight of the cache's entries in bytes.",
            bytes,
        ),
        (
            "atelier_db_pool_connections",
            "gauge",
            "Open pooled database connections.",
            connections.into(),
        ),
        (
            "atelier_db_reads_in_flight",
            "gauge",
            "Database reads sent and not yet answered, over all connections.",
            in_flight,
        ),
        (
            "atelier_db_pool_max_connections",
            "gauge",
            "Database connections the pool keeps open.",
            max.into(),
        ),
        (
            "atelier_db_errors_total",
            "counter",
            "Failed database reads, checks and connection attempts.",
            state.store.errors(),
        ),
        (
            "atelier_notify_listening",
            "gauge",
            "1 while the LISTEN connection for invalidations is up.",
            state.listening.load(Ordering::SeqCst).into(),
        ),
        (
            "atelier_draining",
            "gauge",
            "1 once shutdown has begun.",
            state.draining.load(Ordering::SeqCst).into(),
        ),
    ];
    for (name, kind, help, value) in samples {
        header(&mut out, name, kind, help);
        writeln!(out, "{name} {value}").expect("writing to a String cannot fail");
    }
    out
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}")
        .expect("writing to a String cannot fail");
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
        let mut out = String::new();
        metrics.write_requests(&mut out);
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
