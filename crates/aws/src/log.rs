//! The delivery log on gsi2: a tenant's deliveries spread over
//! [`DELIVERY_LOG_SHARDS`] index keys, read newest first by merging one Query
//! per key, then the items themselves in one batched read (the index holds
//! keys only).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use hookline_core::ports::StoreError;

use crate::backend::AwsBackend;
use crate::items::*;
use crate::table::from_item;

/// The most index entries one listing call reads while its filters match
/// nothing: a page then comes back short, with a cursor to go on from.
pub const LIST_SCAN_BUDGET: usize = 1000;

/// Which part of the log to read: entries older than a cursor (`before`,
/// an index sort key), or those created in a window.
#[derive(Clone, Copy)]
pub enum Span<'a> {
    Before(Option<&'a str>),
    Between(&'a str, &'a str),
}

/// A stretch of the log, newest first.
pub struct Stretch {
    pub items: Vec<DeliveryItem>,
    /// The index sort key of the oldest entry read: where to go on from.
    pub last: Option<String>,
    /// Whether older entries remain in the span.
    pub more: bool,
}

impl AwsBackend {
    /// Up to `want` of the tenant's deliveries in `span`, newest first (every
    /// one when `want` is `usize::MAX`).
    pub(crate) async fn read_log(
        &self,
        tenant: &str,
        span: Span<'_>,
        want: usize,
    ) -> Result<Stretch, StoreError> {
        let shards =
            (0..DELIVERY_LOG_SHARDS).map(|shard| self.read_shard(tenant, shard, span, want));
        let mut entries = Vec::new();
        let mut more = false;
        for shard in futures_util::future::try_join_all(shards).await? {
            // A shard that filled its share may hold more.
            more |= shard.len() >= want;
            entries.extend(shard);
        }
        entries.sort_unstable_by(|a, b| b.0.cmp(&a.0));
        more |= entries.len() > want;
        entries.truncate(want);
        let last = entries.last().map(|(sort, _)| sort.clone());
        let keys: Vec<Item> = entries.iter().map(|(_, key)| key.clone()).collect();
        let mut found: HashMap<String, DeliveryItem> = HashMap::new();
        for item in self.table.batch_get(keys).await? {
            let item: DeliveryItem = from_item(item)?;
            found.insert(item.sk.clone(), item);
        }
        // An entry whose item is gone (its TTL ran out between the two reads)
        // is skipped.
        let items = entries
            .iter()
            .filter_map(|(_, key)| match key.get(SORT_KEY) {
                Some(AttributeValue::S(sk)) => found.remove(sk),
                _ => None,
            })
            .collect();
        Ok(Stretch { items, last, more })
    }

    /// One shard's entries in `span`, newest first: (index sort key, item key).
    async fn read_shard(
        &self,
        tenant: &str,
        shard: u32,
        span: Span<'_>,
        want: usize,
    ) -> Result<Vec<(String, Item)>, StoreError> {
        let (condition, bounds) = match span {
            Span::Before(None) => ("#pk = :pk", vec![]),
            Span::Before(Some(before)) => ("#pk = :pk AND #sk < :to", vec![(":to", before)]),
            Span::Between(from, to) => (
                "#pk = :pk AND #sk BETWEEN :from AND :to",
                vec![(":from", from), (":to", to)],
            ),
        };
        let pk = delivery_log_pk(tenant, shard);
        let entries = self
            .table
            .query(
                |q| {
                    let mut q = q
                        .index_name(GSI2)
                        .key_condition_expression(condition)
                        .expression_attribute_names("#pk", GSI2_PARTITION_KEY)
                        .expression_attribute_values(":pk", AttributeValue::S(pk.clone()))
                        .scan_index_forward(false)
                        .limit(i32::try_from(want).unwrap_or(i32::MAX));
                    if !bounds.is_empty() {
                        q = q.expression_attribute_names("#sk", GSI2_SORT_KEY);
                    }
                    bounds.iter().fold(q, |q, (name, value)| {
                        q.expression_attribute_values(*name, AttributeValue::S((*value).to_owned()))
                    })
                },
                None,
                want,
            )
            .await?;
        Ok(entries
            .into_iter()
            .filter_map(|mut entry| {
                let Some(AttributeValue::S(sort)) = entry.remove(GSI2_SORT_KEY) else {
                    return None;
                };
                let pk = entry.remove(PARTITION_KEY)?;
                let sk = entry.remove(SORT_KEY)?;
                Some((
                    sort,
                    Item::from([(PARTITION_KEY.into(), pk), (SORT_KEY.into(), sk)]),
                ))
            })
            .collect())
    }
}
