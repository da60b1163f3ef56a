//! The delivery log: a tenant's deliveries spread over
//! [`DELIVERY_LOG_SHARDS`] partitions of the table, read newest first by
//! merging one Query per partition. Deliveries an earlier Hookline wrote are
//! listed on gsi2 under the same keys (keys only, their items then read in
//! one batch), read beside them until their TTL has run out.

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
    /// The log sort key of the oldest entry read: where to go on from.
    pub last: Option<String>,
    /// Whether older entries remain in the span.
    pub more: bool,
}

/// Where a shard's entries are: the table's own delivery items, or the
/// keys-only gsi2 entries of deliveries an earlier Hookline wrote. Both
/// use the same keys, so one span and one cursor reads them together.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    Table,
    EarlierIndex,
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
        let shards = (0..DELIVERY_LOG_SHARDS).flat_map(|shard| {
            [Source::Table, Source::EarlierIndex]
                .map(|source| self.read_shard(tenant, shard, source, span, want))
        });
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
        let last = entries.last().map(|(sort, _, _)| sort.clone());
        let keys: Vec<Item> = entries
            .iter()
            .filter(|(_, source, _)| *source == Source::EarlierIndex)
            .map(|(_, _, key)| key.clone())
            .collect();
        let mut earlier: HashMap<String, DeliveryItem> = HashMap::new();
        for item in self.table.batch_get(keys).await? {
            let item: DeliveryItem = from_item(item)?;
            earlier.insert(item.sk.clone(), item);
        }
        let mut items = Vec::with_capacity(entries.len());
        for (_, source, item) in entries {
            match source {
                Source::Table => items.push(from_item(item)?),
                // An entry whose item is gone (its TTL ran out between the
                // two reads) is skipped.
                Source::EarlierIndex => {
                    if let Some(AttributeValue::S(sk)) = item.get(SORT_KEY)
                        && let Some(found) = earlier.remove(sk)
                    {
                        items.push(found);
                    }
                }
            }
        }
        Ok(Stretch { items, last, more })
    }

    /// One shard's entries in `span` from `source`, newest first: (log sort
    /// key, source, the item or, on the index, its key).
    async fn read_shard(
        &self,
        tenant: &str,
        shard: u32,
        source: Source,
        span: Span<'_>,
        want: usize,
    ) -> Result<Vec<(String, Source, Item)>, StoreError> {
        let (condition, bounds) = match span {
            Span::Before(None) => ("#pk = :pk", vec![]),
            Span::Before(Some(before)) => ("#pk = :pk AND #sk < :to", vec![(":to", before)]),
            Span::Between(from, to) => (
                "#pk = :pk AND #sk BETWEEN :from AND :to",
                vec![(":from", from), (":to", to)],
            ),
        };
        let (index, pk_name, sk_name) = match source {
            Source::Table => (None, PARTITION_KEY, SORT_KEY),
            Source::EarlierIndex => (Some(GSI2), GSI2_PARTITION_KEY, GSI2_SORT_KEY),
        };
        let pk = delivery_log_pk(tenant, shard);
        let entries = self
            .table
            .query(
                |q| {
                    let mut q = q
                        .set_index_name(index.map(str::to_owned))
                        .key_condition_expression(condition)
                        .expression_attribute_names("#pk", pk_name)
                        .expression_attribute_values(":pk", AttributeValue::S(pk.clone()))
                        .scan_index_forward(false)
                        .limit(i32::try_from(want).unwrap_or(i32::MAX));
                    if !bounds.is_empty() {
                        q = q.expression_attribute_names("#sk", sk_name);
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
            .filter_map(|entry| match entry.get(sk_name) {
                Some(AttributeValue::S(sort)) => Some((sort.clone(), source, entry)),
                _ => None,
            })
            .collect())
    }
}
