//! `hookline migrate`: moves what an earlier Hookline wrote to where this one
//! looks for it, once after an upgrade, off the hot path. One Scan of the
//! table finds both kinds of item:
//!
//! - deliveries whose log entry is on gsi1 (`DL#{tenant}`): the entry moves
//!   to gsi2. Until then such a delivery is found by id but not listed or
//!   recovered.
//! - rules filed on gsi1 before rules were filed by scope (`R#{rule}` for
//!   every scope): each is filed under its scope. Until then the router
//!   still finds a scoped rule under the universal prefix, at the cost of
//!   reading it for every event of its trigger.
//!
//! Each move is conditional on the item being as the scan read it, so the
//! command can run beside live traffic, and running it again moves nothing.

use aws_sdk_dynamodb::types::AttributeValue;
use hookline_core::id::TenantId;
use hookline_core::ports::StoreError;
use serde::Serialize;

use crate::backend::AwsBackend;
use crate::items::*;
use crate::table::from_item;

/// What one run moved.
#[derive(Debug, Default, PartialEq, Eq, Serialize)]
pub struct Migrated {
    pub deliveries: u64,
    pub rules: u64,
}

pub async fn migrate(backend: &AwsBackend) -> Result<Migrated, StoreError> {
    let old = backend
        .table
        .scan(|s| {
            s.filter_expression("begins_with(#gpk, :log) OR begins_with(#sk, :rule)")
                .expression_attribute_names("#gpk", GSI1_PARTITION_KEY)
                .expression_attribute_names("#sk", SORT_KEY)
                .expression_attribute_values(":log", AttributeValue::S("DL#".into()))
                .expression_attribute_values(":rule", AttributeValue::S(RULE_PREFIX.into()))
        })
        .await?;
    let mut migrated = Migrated::default();
    for item in old {
        let is_rule = matches!(item.get(SORT_KEY), Some(AttributeValue::S(sk)) if sk.starts_with(RULE_PREFIX));
        if is_rule {
            migrated.rules += u64::from(file_rule(backend, from_item(item)?).await?);
        } else {
            migrated.deliveries += u64::from(move_log_entry(backend, from_item(item)?).await?);
        }
    }
    Ok(migrated)
}

/// A delivery's log entry from gsi1 to gsi2.
async fn move_log_entry(backend: &AwsBackend, item: DeliveryItem) -> Result<bool, StoreError> {
    let tenant = item.pk.strip_prefix("T#").unwrap_or(&item.pk);
    let (log_pk, log_sk) = delivery_log_keys(tenant, &item.id, item.created_at);
    let updated = backend
        .table
        .update(key(item.pk.clone(), item.sk.clone()), |u| {
            u.update_expression("SET #pk2 = :pk2, #sk2 = :sk2 REMOVE #pk1, #sk1")
                .condition_expression("attribute_exists(pk)")
                .expression_attribute_names("#pk1", GSI1_PARTITION_KEY)
                .expression_attribute_names("#sk1", GSI1_SORT_KEY)
                .expression_attribute_names("#pk2", GSI2_PARTITION_KEY)
                .expression_attribute_names("#sk2", GSI2_SORT_KEY)
                .expression_attribute_values(":pk2", AttributeValue::S(log_pk))
                .expression_attribute_values(":sk2", AttributeValue::S(log_sk))
        })
        .await?;
    Ok(updated.is_some())
}

/// A rule to where [`rule_index_sk`] files it, unless it is there or has
/// moved since the scan.
async fn file_rule(backend: &AwsBackend, item: RuleItem) -> Result<bool, StoreError> {
    let tenant = TenantId::stored(item.pk.strip_prefix("T#").unwrap_or(&item.pk));
    let rule = item.rule(&tenant)?;
    let filed = rule_index_sk(&rule);
    if item.gsi1sk == filed {
        return Ok(false);
    }
    let updated = backend
        .table
        .update(rule_key(&rule.tenant_id, &rule.id), |u| {
            u.update_expression("SET #gsk = :new")
                .condition_expression("#gsk = :old")
                .expression_attribute_names("#gsk", GSI1_SORT_KEY)
                .expression_attribute_values(":new", AttributeValue::S(filed))
                .expression_attribute_values(":old", AttributeValue::S(item.gsi1sk.clone()))
        })
        .await?;
    Ok(updated.is_some())
}
