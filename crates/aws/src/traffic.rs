//! Rule traffic on DynamoDB: one item per rule and five-minute bucket
//! (`RT#{tenant}#{rule}`, sorted by the bucket's start), into which a
//! deliverer process adds what it counted ([`TrafficBuffer`]) with one
//! UpdateItem of `ADD`s, so processes that settle side by side never read
//! or overwrite each other's counts. Items expire a day after their bucket.
//!
//! What `ADD` cannot merge is kept by the last writer: the last success,
//! the last failure and its error, the slowest attempt, and the failures
//! since the last success (set by a write that saw a success, added to by
//! one that saw none). Those are exact for one process and near enough
//! across several.
//!
//! [`TrafficBuffer`]: hookline_core::traffic::TrafficBuffer

use aws_sdk_dynamodb::types::AttributeValue;
use hookline_core::Timestamp;
use hookline_core::id::{RuleId, TenantId};
use hookline_core::ports::StoreError;
use hookline_core::traffic::{BUCKET, KEPT, LATENCY_BINS, Tallies, Tally};

use crate::backend::AwsBackend;
use crate::items::{Item, SORT_KEY, TTL_ATTRIBUTE, key};

fn traffic_pk(tenant: &str, rule: &str) -> String {
    format!("RT#{tenant}#{rule}")
}

fn bucket_sk(bucket: Timestamp) -> String {
    format!("{:013}", bucket.as_millis())
}

/// The most tallies one settling of attempts writes, side by side: a batch
/// is not held up by a flood of busy rules, which go a few batches at a
/// time.
pub(crate) const WRITES_PER_FINISH: usize = 16;

/// Adds each tally into its bucket's item, the writes side by side: one
/// write per rule and bucket.
pub(crate) async fn write(backend: &AwsBackend, tallies: Tallies) -> Result<(), StoreError> {
    let writes = tallies.into_iter().map(|((tenant, rule, bucket), tally)| {
        let item_key = key(traffic_pk(&tenant, &rule), bucket_sk(bucket));
        backend.table.update(item_key, move |u| {
            let (expression, values) = adding(&tally, bucket);
            values
                .into_iter()
                .fold(u.update_expression(expression), |u, (name, value)| {
                    u.expression_attribute_values(name, value)
                })
                .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
        })
    });
    futures_util::future::try_join_all(writes).await?;
    Ok(())
}

/// The update expression that adds `tally` into its bucket's item, and its
/// values.
fn adding(tally: &Tally, bucket: Timestamp) -> (String, Vec<(String, AttributeValue)>) {
    let n = |v: u64| AttributeValue::N(v.to_string());
    let mut add = vec![("s", tally.successes), ("f", tally.failures)]
        .into_iter()
        .map(|(name, v)| (name.to_owned(), v))
        .chain(
            tally
                .latency
                .iter()
                .enumerate()
                .map(|(bin, v)| (format!("l{bin}"), *v)),
        )
        .filter(|(_, v)| *v > 0)
        .map(|(name, v)| (name.clone(), format!(":{name}"), n(v)))
        .collect::<Vec<_>>();
    let expires =
        (bucket.as_millis() + KEPT.as_millis() as i64) / 1000 + 2 * BUCKET.as_secs() as i64;
    let mut set = vec![("#ttl".to_owned(), ":ttl".to_owned(), n(expires as u64))];
    let trailing = (
        "tr".to_owned(),
        ":tr".to_owned(),
        n(tally.trailing_failures),
    );
    match tally.last_success {
        Some(at) => {
            set.push(("ls".into(), ":ls".into(), n(at.as_millis() as u64)));
            set.push(trailing);
        }
        None if tally.trailing_failures > 0 => add.push(trailing),
        None => {}
    }
    if let Some(at) = tally.last_failure {
        set.push(("lf".into(), ":lf".into(), n(at.as_millis() as u64)));
        if let Some(error) = &tally.last_error {
            set.push(("le".into(), ":le".into(), AttributeValue::S(error.clone())));
        }
    }
    set.push(("slow".into(), ":slow".into(), n(tally.slowest_ms)));
    let clause = |parts: &[(String, String, AttributeValue)], joiner: &str| {
        parts
            .iter()
            .map(|(name, value, _)| format!("{name}{joiner}{value}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut expression = format!("SET {}", clause(&set, " = "));
    if !add.is_empty() {
        expression.push_str(&format!(" ADD {}", clause(&add, " ")));
    }
    let values = set
        .into_iter()
        .chain(add)
        .map(|(_, value, v)| (value, v))
        .collect();
    (expression, values)
}

/// The buckets of a rule that began within the last day.
pub(crate) async fn read(
    backend: &AwsBackend,
    tenant: &TenantId,
    rule: &RuleId,
    now: Timestamp,
) -> Result<Vec<(Timestamp, Tally)>, StoreError> {
    let oldest = Timestamp::from_millis(now.as_millis() - (KEPT + BUCKET).as_millis() as i64);
    let items = backend
        .table
        .query(
            |q| {
                q.key_condition_expression("pk = :pk AND sk >= :from")
                    .expression_attribute_values(":pk", AttributeValue::S(traffic_pk(tenant, rule)))
                    .expression_attribute_values(":from", AttributeValue::S(bucket_sk(oldest)))
            },
            None,
            usize::MAX,
        )
        .await?;
    items.iter().map(tally_of).collect()
}

/// A bucket's item as a tally.
fn tally_of(item: &Item) -> Result<(Timestamp, Tally), StoreError> {
    let number = |name: &str| -> Result<Option<u64>, StoreError> {
        match item.get(name) {
            None => Ok(None),
            Some(AttributeValue::N(v)) => v.parse().map(Some).map_err(|e| {
                StoreError::unreadable("a traffic bucket", format!("{name} = {v}: {e}"))
            }),
            Some(other) => Err(StoreError::unreadable(
                "a traffic bucket",
                format!("{name} is not a number: {other:?}"),
            )),
        }
    };
    let count = |name: &str| number(name).map(Option::unwrap_or_default);
    let stamp = |name: &str| number(name).map(|v| v.map(|ms| Timestamp::from_millis(ms as i64)));
    let bucket = match item.get(SORT_KEY) {
        Some(AttributeValue::S(sk)) => sk.parse::<i64>().ok(),
        _ => None,
    }
    .ok_or_else(|| {
        StoreError::unreadable("a traffic bucket", format!("its {SORT_KEY} is not a start"))
    })?;
    let mut latency = [0; LATENCY_BINS];
    for (bin, slot) in latency.iter_mut().enumerate() {
        *slot = count(&format!("l{bin}"))?;
    }
    let tally = Tally {
        successes: count("s")?,
        failures: count("f")?,
        latency,
        slowest_ms: count("slow")?,
        last_success: stamp("ls")?,
        last_failure: stamp("lf")?,
        last_error: match item.get("le") {
            Some(AttributeValue::S(e)) => Some(e.clone()),
            _ => None,
        },
        trailing_failures: count("tr")?,
    };
    Ok((Timestamp::from_millis(bucket), tally))
}
