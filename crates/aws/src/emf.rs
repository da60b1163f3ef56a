//! The deliverer's metrics as CloudWatch embedded metric format (EMF): JSON
//! log lines that CloudWatch Logs turns into metrics, so counting costs no
//! API call. The names are `hookline serve`'s `/metrics` names; a label there
//! is a dimension here. One batch prints one line for the metrics without a
//! dimension and one per dimension value it saw.

use aws_lambda_events::event::sqs::SqsMessage;
use hookline_core::delivery::AttemptResult;
use hookline_core::ports::{Outcome, Settlement};
use hookline_core::{Attempt, Timestamp};
use serde_json::{Map, Value, json};

/// The variable naming the CloudWatch namespace the metrics go to; unset,
/// the deliverer prints none.
pub const NAMESPACE_VAR: &str = "HOOKLINE_METRICS_NAMESPACE";

/// Every metric the deliverer emits, with its dimension: what the
/// template's alarms and dashboard may refer to.
pub const METRICS: &[(&str, Option<&str>)] = &[
    ("hookline_attempts_total", Some("result")),
    ("hookline_deliveries_ended_total", Some("outcome")),
    ("hookline_retries_total", None),
    ("hookline_attempt_duration_seconds", None),
    ("hookline_oldest_due_age_seconds", None),
];

/// What one batch did, counted as its attempts settle.
#[derive(Debug, Default)]
pub struct BatchMetrics {
    attempts: [u64; 3],
    succeeded: u64,
    dead: u64,
    retries: u64,
    durations: Vec<f64>,
    oldest_due_age: Option<f64>,
}

impl BatchMetrics {
    /// Notes how long the batch's first receives waited in the queue since
    /// they were sent (a retry's wait is its schedule, not a backlog).
    pub fn received(&mut self, records: &[SqsMessage], now: Timestamp) {
        let attribute = |r: &SqsMessage, name: &str| -> Option<i64> {
            r.attributes.get(name).and_then(|v| v.parse().ok())
        };
        let waits = records
            .iter()
            .filter(|r| attribute(r, "ApproximateReceiveCount") == Some(1))
            .filter_map(|r| attribute(r, "SentTimestamp"))
            .map(|sent| (now.as_millis() - sent).max(0) as f64 / 1000.0);
        self.oldest_due_age = waits.fold(self.oldest_due_age, |oldest, w| {
            Some(oldest.map_or(w, |o: f64| o.max(w)))
        });
    }

    /// Counts a settled attempt.
    pub fn settled(&mut self, s: &Settlement) {
        self.observe(&s.attempt, s.outcome);
    }

    fn observe(&mut self, attempt: &Attempt, outcome: Outcome) {
        self.attempts[AttemptResult::of(attempt) as usize] += 1;
        match outcome {
            Outcome::Succeeded => self.succeeded += 1,
            Outcome::RetryAt(_) => self.retries += 1,
            Outcome::Dead => self.dead += 1,
        }
        self.durations.push(attempt.duration_ms as f64 / 1000.0);
    }

    /// The EMF lines for this batch in `namespace`, stamped `now`.
    pub fn lines(&self, namespace: &str, now: Timestamp) -> Vec<String> {
        let mut lines = Vec::new();
        let mut plain = Map::new();
        plain.insert("hookline_retries_total".into(), json!(self.retries));
        // EMF takes up to 100 values a metric; a batch holds at most 10.
        plain.insert(
            "hookline_attempt_duration_seconds".into(),
            json!(self.durations),
        );
        if let Some(age) = self.oldest_due_age {
            plain.insert("hookline_oldest_due_age_seconds".into(), json!(age));
        }
        lines.push(document(namespace, now, None, plain));
        let results = AttemptResult::ALL
            .iter()
            .map(|r| (r.as_str(), self.attempts[*r as usize]));
        for (result, n) in results.filter(|(_, n)| *n > 0) {
            let values = Map::from_iter([("hookline_attempts_total".into(), json!(n))]);
            lines.push(document(namespace, now, Some(("result", result)), values));
        }
        let ended = [("succeeded", self.succeeded), ("dead", self.dead)];
        for (outcome, n) in ended.into_iter().filter(|(_, n)| *n > 0) {
            let values = Map::from_iter([("hookline_deliveries_ended_total".into(), json!(n))]);
            lines.push(document(namespace, now, Some(("outcome", outcome)), values));
        }
        lines
    }
}

/// One EMF document: `values` under `namespace`, with one dimension or none.
fn document(
    namespace: &str,
    now: Timestamp,
    dimension: Option<(&str, &str)>,
    values: Map<String, Value>,
) -> String {
    let unit = |name: &str| {
        if name.ends_with("_seconds") {
            "Seconds"
        } else {
            "Count"
        }
    };
    let metrics: Vec<Value> = values
        .keys()
        .map(|name| json!({"Name": name, "Unit": unit(name)}))
        .collect();
    let dimensions: Vec<&str> = dimension.iter().map(|(name, _)| *name).collect();
    let mut root = values;
    if let Some((name, value)) = dimension {
        root.insert(name.into(), json!(value));
    }
    root.insert(
        "_aws".into(),
        json!({
            "Timestamp": now.as_millis(),
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [dimensions],
                "Metrics": metrics,
            }],
        }),
    );
    Value::Object(root).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(status: Option<u16>, ms: u64) -> Attempt {
        Attempt {
            at: Timestamp::from_millis(0),
            status_code: status,
            duration_ms: ms,
            error: None,
            response_body: None,
        }
    }

    /// Each line is an EMF document: every metric it declares is a number
    /// (or numbers) at its root, every dimension a string there, and only
    /// metrics of [`METRICS`] with their own dimension.
    #[test]
    fn a_batch_prints_emf_documents_of_the_declared_metrics() {
        let mut m = BatchMetrics::default();
        let now = Timestamp::from_millis(1_795_953_600_000);
        let record = |count: &str, sent_ms: i64| {
            let mut r = SqsMessage::default();
            r.attributes
                .insert("ApproximateReceiveCount".into(), count.into());
            r.attributes
                .insert("SentTimestamp".into(), sent_ms.to_string());
            r
        };
        let sent = now.as_millis();
        m.received(
            &[
                record("1", sent - 4_000),
                record("1", sent - 1_000),
                record("3", 0),
            ],
            now,
        );
        m.observe(&attempt(Some(204), 20), Outcome::Succeeded);
        m.observe(&attempt(Some(500), 30), Outcome::RetryAt(now));
        m.observe(&attempt(None, 10_000), Outcome::Dead);
        let lines = m.lines("Hookline/test", now);
        assert_eq!(lines.len(), 1 + 3 + 2);
        let mut seen = Map::new();
        for line in &lines {
            let doc: Value = serde_json::from_str(line).unwrap();
            let directive = &doc["_aws"]["CloudWatchMetrics"][0];
            assert_eq!(directive["Namespace"], "Hookline/test");
            assert_eq!(doc["_aws"]["Timestamp"], now.as_millis());
            let dims: Vec<&str> = directive["Dimensions"][0]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_str().unwrap())
                .collect();
            for metric in directive["Metrics"].as_array().unwrap() {
                let name = metric["Name"].as_str().unwrap();
                let declared = METRICS.iter().find(|(n, _)| *n == name);
                let (_, dimension) = declared.unwrap_or_else(|| panic!("{name} is not declared"));
                assert_eq!(
                    dims,
                    dimension.iter().copied().collect::<Vec<_>>(),
                    "{line}"
                );
                let value = &doc[name];
                assert!(
                    value.is_number()
                        || value
                            .as_array()
                            .is_some_and(|a| a.iter().all(Value::is_number)),
                    "{line}"
                );
                let key = match dims.first() {
                    Some(d) => format!("{name}{{{d}={}}}", doc[*d].as_str().unwrap()),
                    None => name.to_owned(),
                };
                seen.insert(key, value.clone());
            }
        }
        assert_eq!(seen["hookline_attempts_total{result=success}"], 1);
        assert_eq!(seen["hookline_attempts_total{result=failure}"], 1);
        assert_eq!(seen["hookline_attempts_total{result=error}"], 1);
        assert_eq!(
            seen["hookline_deliveries_ended_total{outcome=succeeded}"],
            1
        );
        assert_eq!(seen["hookline_deliveries_ended_total{outcome=dead}"], 1);
        assert_eq!(seen["hookline_retries_total"], 1);
        assert_eq!(
            seen["hookline_attempt_duration_seconds"],
            json!([0.02, 0.03, 10.0])
        );
        assert_eq!(
            seen["hookline_oldest_due_age_seconds"], 4.0,
            "the longest first receive; a retry's wait is not a backlog"
        );
    }
}
