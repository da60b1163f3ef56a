//! The DynamoDB table: every call Hookline makes to it, counted, with its
//! errors kept. What the items are is `items`; what they mean is the store's.

use std::sync::Arc;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::operation::scan::builders::ScanFluentBuilder;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::{
    AttributeValue, Delete, KeysAndAttributes, Put, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem, Update,
};
use hookline_core::ports::StoreError;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::calls::Calls;
use crate::error::{build_error, sdk_error, unreadable};
use crate::items::{Item, TTL_ATTRIBUTE};

#[derive(Clone)]
pub(crate) struct Table {
    client: Client,
    name: String,
    calls: Arc<Calls>,
}

pub(crate) fn to_item<T: Serialize>(v: &T) -> Result<Item, StoreError> {
    serde_dynamo::to_item(v).map_err(|e| build_error("encode item", e))
}

pub(crate) fn to_value<T: Serialize>(v: &T) -> Result<AttributeValue, StoreError> {
    serde_dynamo::to_attribute_value(v).map_err(|e| build_error("encode attribute", e))
}

pub(crate) fn from_item<T: DeserializeOwned>(item: Item) -> Result<T, StoreError> {
    serde_dynamo::from_item(item).map_err(|e| unreadable("item", e))
}

/// A write refused because its condition did not hold.
fn is_conditional_failure<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    e.as_service_error().and_then(|se| se.code()) == Some("ConditionalCheckFailedException")
}

/// Which writes of a transaction a failed condition cancelled, if that is
/// why it was cancelled.
fn failed_conditions<R>(e: &SdkError<TransactWriteItemsError, R>) -> Option<Vec<bool>> {
    match e.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(c)) => {
            let failed: Vec<bool> = c
                .cancellation_reasons()
                .iter()
                .map(|r| r.code() == Some("ConditionalCheckFailed"))
                .collect();
            failed.contains(&true).then_some(failed)
        }
        _ => None,
    }
}

impl Table {
    pub fn new(client: Client, name: String, calls: Arc<Calls>) -> Self {
        Table {
            client,
            name,
            calls,
        }
    }

    /// The same client and counters on another table.
    pub fn with_name(&self, name: String) -> Self {
        Table {
            name,
            ..self.clone()
        }
    }

    /// GetItem, strongly consistent.
    pub async fn get<T: DeserializeOwned>(&self, key: Item) -> Result<Option<T>, StoreError> {
        self.calls.count_read();
        let out = self
            .client
            .get_item()
            .table_name(&self.name)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", e))?;
        out.item.map(from_item).transpose()
    }

    /// PutItem; false when `condition` did not hold.
    pub async fn put(&self, item: Item, condition: &str) -> Result<bool, StoreError> {
        self.calls.count_write();
        let result = self
            .client
            .put_item()
            .table_name(&self.name)
            .set_item(Some(item))
            .condition_expression(condition)
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_conditional_failure(&e) => Ok(false),
            Err(e) => Err(sdk_error("PutItem", e)),
        }
    }

    /// PutItem of an item that must not exist yet: `None` when it was
    /// written, else the item that was there, which the failed condition
    /// returns at no extra read.
    pub async fn put_new(&self, item: Item) -> Result<Option<Item>, StoreError> {
        self.calls.count_write();
        let result = self
            .client
            .put_item()
            .table_name(&self.name)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(None),
            Err(e) => match e.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(failed)) => {
                    Ok(Some(failed.item().cloned().unwrap_or_default()))
                }
                _ => Err(sdk_error("PutItem", e)),
            },
        }
    }

    /// UpdateItem of `key` with what `update` sets: `None` when its
    /// condition did not hold, else the attributes it asked to have returned.
    pub async fn update(
        &self,
        key: Item,
        update: impl FnOnce(UpdateItemFluentBuilder) -> UpdateItemFluentBuilder,
    ) -> Result<Option<Item>, StoreError> {
        self.calls.count_write();
        let request = self
            .client
            .update_item()
            .table_name(&self.name)
            .set_key(Some(key));
        match update(request).send().await {
            Ok(out) => Ok(Some(out.attributes.unwrap_or_default())),
            Err(e) if is_conditional_failure(&e) => Ok(None),
            Err(e) => Err(sdk_error("UpdateItem", e)),
        }
    }

    /// Counts one more in the counter item `key` (a window's sends), unless
    /// `limit` are counted already: answers whether it was counted. The item
    /// expires at `expires` (Unix seconds).
    pub async fn take_slot(&self, key: Item, limit: u32, expires: i64) -> Result<bool, StoreError> {
        let counted = self
            .update(key, |u| {
                u.update_expression("ADD sends :one SET #ttl = :ttl")
                    .condition_expression("attribute_not_exists(sends) OR sends < :limit")
                    .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
                    .expression_attribute_values(":one", AttributeValue::N("1".into()))
                    .expression_attribute_values(":limit", AttributeValue::N(limit.to_string()))
                    .expression_attribute_values(":ttl", AttributeValue::N(expires.to_string()))
            })
            .await?;
        Ok(counted.is_some())
    }

    /// TransactWriteItems. When conditions cancelled it: `Err` with, for
    /// each write in order, whether its condition failed.
    pub async fn transact(
        &self,
        writes: Vec<TransactWriteItem>,
    ) -> Result<Result<(), Vec<bool>>, StoreError> {
        self.calls.count_write();
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(writes))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Ok(())),
            Err(e) => match failed_conditions(&e) {
                Some(failed) => Ok(Err(failed)),
                None => Err(sdk_error("TransactWriteItems", e)),
            },
        }
    }

    /// An update for [`Table::transact`]: `update` sets the expression,
    /// names, values and condition.
    pub fn update_write(
        &self,
        key: Item,
        update: impl FnOnce(
            aws_sdk_dynamodb::types::builders::UpdateBuilder,
        ) -> aws_sdk_dynamodb::types::builders::UpdateBuilder,
    ) -> Result<TransactWriteItem, StoreError> {
        let update = update(Update::builder().table_name(&self.name).set_key(Some(key)))
            .build()
            .map_err(|e| build_error("TransactWriteItems", e))?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// A put for [`Table::transact`], under `condition` if one is given.
    pub fn put_write(
        &self,
        item: Item,
        condition: Option<&str>,
    ) -> Result<TransactWriteItem, StoreError> {
        let put = Put::builder()
            .table_name(&self.name)
            .set_item(Some(item))
            .set_condition_expression(condition.map(str::to_owned))
            .build()
            .map_err(|e| build_error("TransactWriteItems", e))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// A delete for [`Table::transact`], under `condition` if one is given.
    pub fn delete_write(
        &self,
        key: Item,
        condition: Option<&str>,
    ) -> Result<TransactWriteItem, StoreError> {
        let delete = Delete::builder()
            .table_name(&self.name)
            .set_key(Some(key))
            .set_condition_expression(condition.map(str::to_owned))
            .build()
            .map_err(|e| build_error("TransactWriteItems", e))?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }

    /// A Query page after page, from `start`: `query` sets everything but
    /// the table and the start key. Stops when there are no more pages or at
    /// least `enough` items came.
    pub async fn query(
        &self,
        query: impl Fn(QueryFluentBuilder) -> QueryFluentBuilder,
        mut start: Option<Item>,
        enough: usize,
    ) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        loop {
            self.calls.count_read();
            let out = query(self.client.query().table_name(&self.name))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| sdk_error("Query", e))?;
            items.extend(out.items.unwrap_or_default());
            start = out.last_evaluated_key;
            if start.is_none() || items.len() >= enough {
                return Ok(items);
            }
        }
    }

    /// The whole table, page after page, as `scan` filters it: for
    /// operators' one-time commands, never a request's path.
    pub async fn scan(
        &self,
        scan: impl Fn(ScanFluentBuilder) -> ScanFluentBuilder,
    ) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            self.calls.count_read();
            let out = scan(self.client.scan().table_name(&self.name))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| sdk_error("Scan", e))?;
            items.extend(out.items.unwrap_or_default());
            start = out.last_evaluated_key;
            if start.is_none() {
                return Ok(items);
            }
        }
    }

    /// BatchGetItem, 100 keys a call, retrying unprocessed keys; strongly consistent.
    pub async fn batch_get(&self, keys: Vec<Item>) -> Result<Vec<Item>, StoreError> {
        self.batch_get_read(keys, true).await
    }

    /// [`Table::batch_get`] eventually consistent, at half the read units:
    /// for items that do not change once written, or where a second-old
    /// copy will do.
    pub async fn batch_get_eventual(&self, keys: Vec<Item>) -> Result<Vec<Item>, StoreError> {
        self.batch_get_read(keys, false).await
    }

    async fn batch_get_read(
        &self,
        keys: Vec<Item>,
        consistent: bool,
    ) -> Result<Vec<Item>, StoreError> {
        let mut found = Vec::new();
        for chunk in keys.chunks(100) {
            let mut pending = Some(
                KeysAndAttributes::builder()
                    .set_keys(Some(chunk.to_vec()))
                    .consistent_read(consistent)
                    .build()
                    .map_err(|e| build_error("BatchGetItem", e))?,
            );
            while let Some(request) = pending.take() {
                self.calls.count_read();
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.name, request)
                    .send()
                    .await
                    .map_err(|e| sdk_error("BatchGetItem", e))?;
                if let Some(mut responses) = out.responses {
                    found.extend(responses.remove(&self.name).unwrap_or_default());
                }
                pending = out
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.name))
                    .filter(|k| !k.keys.is_empty());
            }
        }
        Ok(found)
    }
}
