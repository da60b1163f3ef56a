//! What `hookline serve` counts of its deliveries, served as Prometheus text
//! at `/metrics` on a listen address of its own (`--metrics-listen`), so the
//! API's listener and its clients never see it. Counters are atomics bumped
//! as each attempt settles; the queue's gauges are read when scraped. No
//! label names a tenant or a rule: their number is the merchants' to grow.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use hookline_core::Settlement;
use hookline_core::delivery::AttemptResult;
use hookline_core::ports::{Clock, Outcome};
use hookline_sqlite::{SqliteBackend, StoreMetrics};

/// Upper bounds of the attempt duration histogram, in milliseconds.
const DURATION_BUCKETS_MS: [u64; 10] = [5, 10, 25, 50, 100, 250, 500, 1_000, 5_000, 15_000];

/// Status classes of ingest answers.
const INGEST_CLASSES: [&str; 3] = ["2xx", "4xx", "5xx"];

#[derive(Default)]
pub struct Metrics {
    /// Ingest requests (`POST /v1/events` and `/v1/events/batch`) by the
    /// class of their answer.
    ingest: [AtomicU64; 3],
    attempts: [AtomicU64; 3],
    retries: AtomicU64,
    succeeded: AtomicU64,
    dead: AtomicU64,
    duration_buckets: [AtomicU64; DURATION_BUCKETS_MS.len()],
    duration_count: AtomicU64,
    duration_sum_ms: AtomicU64,
    /// Attempts by rule, when asked for (`--metrics-per-rule`).
    per_rule: Option<Mutex<PerRule>>,
}

/// The most rules counted apart; attempts of rules past it are counted in
/// `hookline_rule_series_dropped_total` only.
const PER_RULE_SERIES: usize = 10_000;

#[derive(Default)]
struct PerRule {
    /// Attempts by (tenant, rule), by result.
    series: BTreeMap<(String, String), [u64; 3]>,
    dropped: u64,
}

/// A label value as the text format writes it.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// Metrics with a series per rule as well.
    pub fn per_rule() -> Self {
        Metrics {
            per_rule: Some(Mutex::default()),
            ..Metrics::default()
        }
    }

    /// Counts an ingest request's answer.
    pub fn observe_ingest(&self, status: u16) {
        let class = match status {
            200..=399 => 0,
            400..=499 => 1,
            _ => 2,
        };
        self.ingest[class].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a settled attempt.
    pub fn observe(&self, s: &Settlement) {
        let result = AttemptResult::of(&s.attempt) as usize;
        self.attempts[result].fetch_add(1, Ordering::Relaxed);
        if let Some(Ok(mut per)) = self.per_rule.as_ref().map(Mutex::lock) {
            let key = (s.tenant_id.to_string(), s.rule_id.to_string());
            let room = per.series.len() < PER_RULE_SERIES;
            match per.series.get_mut(&key) {
                Some(counts) => counts[result] += 1,
                None if room => {
                    let mut counts = [0; 3];
                    counts[result] = 1;
                    per.series.insert(key, counts);
                }
                None => per.dropped += 1,
            }
        }
        match s.outcome {
            Outcome::Succeeded => &self.succeeded,
            Outcome::RetryAt(_) => &self.retries,
            Outcome::Dead => &self.dead,
        }
        .fetch_add(1, Ordering::Relaxed);
        let ms = s.attempt.duration_ms;
        for (bucket, bound) in self.duration_buckets.iter().zip(DURATION_BUCKETS_MS) {
            if ms <= bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.duration_count.fetch_add(1, Ordering::Relaxed);
        self.duration_sum_ms.fetch_add(ms, Ordering::Relaxed);
    }

    /// The Prometheus text exposition (format 0.0.4): the counters, the
    /// store's own, and the queue as it is now.
    pub fn render(
        &self,
        queued: usize,
        oldest_due_age_seconds: f64,
        store: &StoreMetrics,
    ) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, samples: &[(String, String)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        let ingest: Vec<(String, String)> = INGEST_CLASSES
            .iter()
            .zip(&self.ingest)
            .map(|(class, n)| (format!("{{code=\"{class}\"}}"), get(n).to_string()))
            .collect();
        family(
            "hookline_ingest_requests_total",
            "counter",
            "Ingest requests (POST /v1/events and /v1/events/batch), by the class of their answer.",
            &ingest,
        );
        let attempts: Vec<(String, String)> = AttemptResult::ALL
            .iter()
            .map(|result| {
                (
                    format!("{{result=\"{}\"}}", result.as_str()),
                    get(&self.attempts[*result as usize]).to_string(),
                )
            })
            .collect();
        family(
            "hookline_attempts_total",
            "counter",
            "Delivery attempts, by what the receiver did: success (2xx), failure (another status), error (no answer).",
            &attempts,
        );
        family(
            "hookline_retries_total",
            "counter",
            "Attempts after which the delivery waits for its next try.",
            &[(String::new(), get(&self.retries).to_string())],
        );
        family(
            "hookline_deliveries_ended_total",
            "counter",
            "Deliveries that ended: succeeded, or dead after their last attempt.",
            &[
                (
                    "{outcome=\"succeeded\"}".into(),
                    get(&self.succeeded).to_string(),
                ),
                ("{outcome=\"dead\"}".into(), get(&self.dead).to_string()),
            ],
        );
        let mut buckets: Vec<(String, String)> = DURATION_BUCKETS_MS
            .iter()
            .zip(&self.duration_buckets)
            .map(|(bound, n)| {
                (
                    format!("_bucket{{le=\"{}\"}}", *bound as f64 / 1000.0),
                    get(n).to_string(),
                )
            })
            .collect();
        let count = get(&self.duration_count).to_string();
        buckets.push(("_bucket{le=\"+Inf\"}".into(), count.clone()));
        buckets.push((
            "_sum".into(),
            (get(&self.duration_sum_ms) as f64 / 1000.0).to_string(),
        ));
        buckets.push(("_count".into(), count));
        family(
            "hookline_attempt_duration_seconds",
            "histogram",
            "How long attempts took, from the request to the receiver's answer or the timeout.",
            &buckets,
        );
        if let Some(Ok(per)) = self.per_rule.as_ref().map(Mutex::lock) {
            let series: Vec<(String, String)> = per
                .series
                .iter()
                .flat_map(|((tenant, rule), counts)| {
                    AttemptResult::ALL.iter().map(move |r| {
                        (
                            format!(
                                "{{tenant=\"{}\",rule=\"{}\",result=\"{}\"}}",
                                label(tenant),
                                label(rule),
                                r.as_str()
                            ),
                            counts[*r as usize].to_string(),
                        )
                    })
                })
                .collect();
            family(
                "hookline_rule_attempts_total",
                "counter",
                "Delivery attempts by tenant, rule and result (--metrics-per-rule).",
                &series,
            );
            family(
                "hookline_rule_series_dropped_total",
                "counter",
                "Attempts of rules past the 10,000 counted apart.",
                &[(String::new(), per.dropped.to_string())],
            );
        }
        family(
            "hookline_circuit_opens_total",
            "counter",
            "Times a rule's circuit opened: its receiver failed too often, or a probe failed.",
            &[(String::new(), store.circuits_opened.to_string())],
        );
        let mut commits: Vec<(String, String)> = store
            .commit_buckets
            .iter()
            .map(|(bound, n)| (format!("_bucket{{le=\"{bound}\"}}"), n.to_string()))
            .collect();
        commits.push(("_bucket{le=\"+Inf\"}".into(), store.commits.to_string()));
        commits.push(("_sum".into(), store.commit_seconds.to_string()));
        commits.push(("_count".into(), store.commits.to_string()));
        family(
            "hookline_store_commit_seconds",
            "histogram",
            "The store's transactions, from BEGIN to COMMIT done (with its fsync when one is due): what every write waits for at least.",
            &commits,
        );
        family(
            "hookline_deliveries_queued",
            "gauge",
            "Pending deliveries the queue holds: due, leased, or waiting for a retry.",
            &[(String::new(), queued.to_string())],
        );
        family(
            "hookline_oldest_due_age_seconds",
            "gauge",
            "How long the longest-waiting due delivery has been due (0 when none is).",
            &[(String::new(), oldest_due_age_seconds.to_string())],
        );
        out
    }
}

/// The metrics listener's router: `GET /metrics`.
pub fn router(metrics: Arc<Metrics>, queue: SqliteBackend, clock: Arc<dyn Clock>) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(Scraped {
            metrics,
            queue,
            clock,
        })
}

#[derive(Clone)]
struct Scraped {
    metrics: Arc<Metrics>,
    queue: SqliteBackend,
    clock: Arc<dyn Clock>,
}

async fn scrape(State(s): State<Scraped>) -> impl IntoResponse {
    let now = s.clock.now().as_millis();
    let age = s
        .queue
        .next_due()
        .map_or(0.0, |due| (now - due.as_millis()).max(0) as f64 / 1000.0);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(s.queue.queued(), age, &s.queue.metrics()),
    )
}

/// Counts ingest requests' answers around the API's router.
pub async fn count_ingest(
    State(metrics): State<Arc<Metrics>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let ingest = request.method() == axum::http::Method::POST
        && matches!(request.uri().path(), "/v1/events" | "/v1/events/batch");
    let response = next.run(request).await;
    if ingest {
        metrics.observe_ingest(response.status().as_u16());
    }
    response
}
