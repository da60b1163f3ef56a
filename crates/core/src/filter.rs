//! Payload filters: a JSON condition on the body a delivery would carry, in
//! the operator syntax Hookdeck and Outpost users know. Nested objects follow
//! the body (`{"data": {"amount": {"$gte": 1000}, "currency": "EUR"}}`); a
//! plain value means equal; operators `$eq`, `$neq`, `$gt`, `$gte`, `$lt`,
//! `$lte`, `$in`, `$nin`, `$startsWith`, `$endsWith`, `$exist`, and the logic
//! `$and`, `$or` (lists of conditions) and `$not`. A filter is checked when
//! its rule is saved, with the offending path named, and evaluated when an
//! event is routed: no match, no delivery.

use std::cmp::Ordering;

use serde_json::{Map, Value};

use crate::error::FieldError;

/// The deepest a filter may nest, and the most conditions it may hold, so a
/// rule cannot make routing expensive.
const MAX_DEPTH: usize = 16;
const MAX_NODES: usize = 256;

/// A checked filter, and the JSON it was written as.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    source: Value,
    condition: Condition,
}

/// A condition on one value of the body (the body itself at the top).
#[derive(Debug, Clone, PartialEq)]
enum Condition {
    All(Vec<Condition>),
    Any(Vec<Condition>),
    Not(Box<Condition>),
    /// The value's field `.0` meets the condition.
    Field(String, Box<Condition>),
    Compare(Op, Value),
    Exists(bool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Neq,
    Gt,
    Gte,
    Lt,
    Lte,
    In,
    Nin,
    StartsWith,
    EndsWith,
}

impl Filter {
    /// Checks `source`, naming the offending path (`filter.data.$foo`).
    pub fn parse(source: &Value) -> Result<Filter, FieldError> {
        let mut nodes = 0;
        let object = source
            .as_object()
            .ok_or_else(|| FieldError::invalid("filter", "must be a JSON object"))?;
        let condition = object_condition(object, "filter", 0, &mut nodes)?;
        Ok(Filter {
            source: source.clone(),
            condition,
        })
    }

    /// The filter as it was written.
    pub fn source(&self) -> &Value {
        &self.source
    }

    /// Whether `body` (the delivery's body) meets the filter.
    pub fn matches(&self, body: &dyn Body) -> bool {
        eval_body(&self.condition, body)
    }
}

/// A body to judge, read a top-level field at a time, so that the fan-out
/// need not build (and copy the event's `data` into) a whole body for each
/// rule and line.
pub trait Body {
    fn field(&self, name: &str) -> Option<&Value>;
    /// The whole body, for the rare condition on the body itself.
    fn whole(&self) -> Value;
}

impl Body for Value {
    fn field(&self, name: &str) -> Option<&Value> {
        self.get(name)
    }
    fn whole(&self) -> Value {
        self.clone()
    }
}

fn invalid(path: &str, message: &str) -> FieldError {
    FieldError::invalid(path, message)
}

/// An object of field names and logic operators: all must hold.
fn object_condition(
    object: &Map<String, Value>,
    path: &str,
    depth: usize,
    nodes: &mut usize,
) -> Result<Condition, FieldError> {
    if depth > MAX_DEPTH {
        return Err(invalid(path, "nests too deep (at most 16 levels)"));
    }
    let mut all = Vec::with_capacity(object.len());
    for (key, value) in object {
        *nodes += 1;
        if *nodes > MAX_NODES {
            return Err(invalid(path, "has too many conditions (at most 256)"));
        }
        let here = format!("{path}.{key}");
        let condition = if key.starts_with('$') {
            operator(key, value, &here, depth, nodes)?
        } else {
            Condition::Field(
                key.clone(),
                Box::new(value_condition(value, &here, depth + 1, nodes)?),
            )
        };
        all.push(condition);
    }
    Ok(Condition::All(all))
}

/// What a field's value must meet: an object of operators, a nested object
/// of fields, or a plain value to equal.
fn value_condition(
    value: &Value,
    path: &str,
    depth: usize,
    nodes: &mut usize,
) -> Result<Condition, FieldError> {
    match value {
        Value::Object(object) => object_condition(object, path, depth, nodes),
        other => Ok(Condition::Compare(Op::Eq, other.clone())),
    }
}

fn operator(
    key: &str,
    value: &Value,
    path: &str,
    depth: usize,
    nodes: &mut usize,
) -> Result<Condition, FieldError> {
    let mut list = |value: &Value| -> Result<Vec<Condition>, FieldError> {
        let items = value
            .as_array()
            .filter(|a| !a.is_empty())
            .ok_or_else(|| invalid(path, "must be a non-empty list of conditions"))?;
        items
            .iter()
            .enumerate()
            .map(|(i, c)| value_condition(c, &format!("{path}[{i}]"), depth + 1, nodes))
            .collect()
    };
    let op = match key {
        "$and" => return list(value).map(Condition::All),
        "$or" => return list(value).map(Condition::Any),
        "$not" => {
            return value_condition(value, path, depth + 1, nodes)
                .map(|c| Condition::Not(Box::new(c)));
        }
        "$exist" => {
            return value
                .as_bool()
                .map(Condition::Exists)
                .ok_or_else(|| invalid(path, "must be true or false"));
        }
        "$eq" => Op::Eq,
        "$neq" => Op::Neq,
        "$gt" => Op::Gt,
        "$gte" => Op::Gte,
        "$lt" => Op::Lt,
        "$lte" => Op::Lte,
        "$in" => Op::In,
        "$nin" => Op::Nin,
        "$startsWith" => Op::StartsWith,
        "$endsWith" => Op::EndsWith,
        _ => {
            return Err(invalid(
                path,
                "is not an operator ($eq, $neq, $gt, $gte, $lt, $lte, $in, $nin, $startsWith, \
                 $endsWith, $exist, $and, $or, $not)",
            ));
        }
    };
    let ok = match op {
        Op::Gt | Op::Gte | Op::Lt | Op::Lte => value.is_number() || value.is_string(),
        Op::In | Op::Nin => value.is_array(),
        Op::StartsWith | Op::EndsWith => value.is_string(),
        Op::Eq | Op::Neq => true,
    };
    if !ok {
        let what = match op {
            Op::In | Op::Nin => "must be a list of values",
            Op::StartsWith | Op::EndsWith => "must be a string",
            _ => "must be a number or a string",
        };
        return Err(invalid(path, what));
    }
    Ok(Condition::Compare(op, value.clone()))
}

/// [`eval`] on the body itself, which is always there.
fn eval_body(condition: &Condition, body: &dyn Body) -> bool {
    match condition {
        Condition::All(all) => all.iter().all(|c| eval_body(c, body)),
        Condition::Any(any) => any.iter().any(|c| eval_body(c, body)),
        Condition::Not(c) => !eval_body(c, body),
        Condition::Field(name, c) => eval(c, body.field(name)),
        Condition::Exists(wanted) => *wanted,
        Condition::Compare(op, operand) => compare(*op, Some(&body.whole()), operand),
    }
}

/// `value` is `None` where the body has no such field.
fn eval(condition: &Condition, value: Option<&Value>) -> bool {
    match condition {
        Condition::All(all) => all.iter().all(|c| eval(c, value)),
        Condition::Any(any) => any.iter().any(|c| eval(c, value)),
        Condition::Not(c) => !eval(c, value),
        Condition::Field(name, c) => eval(c, value.and_then(|v| v.get(name))),
        Condition::Exists(wanted) => value.is_some() == *wanted,
        Condition::Compare(op, operand) => compare(*op, value, operand),
    }
}

fn compare(op: Op, value: Option<&Value>, operand: &Value) -> bool {
    let Some(value) = value else {
        // A missing field equals nothing and is in no list.
        return matches!(op, Op::Neq | Op::Nin);
    };
    match op {
        Op::Eq => equal(value, operand),
        Op::Neq => !equal(value, operand),
        Op::Gt => order(value, operand) == Some(Ordering::Greater),
        Op::Gte => matches!(
            order(value, operand),
            Some(Ordering::Greater | Ordering::Equal)
        ),
        Op::Lt => order(value, operand) == Some(Ordering::Less),
        Op::Lte => matches!(
            order(value, operand),
            Some(Ordering::Less | Ordering::Equal)
        ),
        Op::In => operand
            .as_array()
            .is_some_and(|list| list.iter().any(|o| equal(value, o))),
        Op::Nin => operand
            .as_array()
            .is_some_and(|list| !list.iter().any(|o| equal(value, o))),
        Op::StartsWith => {
            matches!((value, operand), (Value::String(v), Value::String(o)) if v.starts_with(o.as_str()))
        }
        Op::EndsWith => {
            matches!((value, operand), (Value::String(v), Value::String(o)) if v.ends_with(o.as_str()))
        }
    }
}

/// Equality, with numbers equal by value (`1` and `1.0`).
fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// Numbers by value, strings by their characters; nothing else orders.
fn order(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn matches(filter: Value, body: Value) -> bool {
        Filter::parse(&filter).unwrap().matches(&body)
    }

    #[test]
    fn the_operators_as_documented() {
        let body = json!({"type": "order.paid", "data": {"amount": 4900, "currency": "EUR",
            "email": "a@shop.example", "tags": ["vip"]}, "line": {"product_id": "prod_1"}});
        for (filter, expected) in [
            (
                json!({"data": {"amount": {"$gte": 1000}, "currency": "EUR"}}),
                true,
            ),
            (json!({"data": {"amount": {"$gt": 4900}}}), false),
            (json!({"data": {"amount": {"$lt": 5000.5}}}), true),
            (json!({"data": {"amount": {"$lte": 4900}}}), true),
            (json!({"data": {"amount": 4900.0}}), true),
            (json!({"data": {"currency": {"$neq": "USD"}}}), true),
            (json!({"data": {"currency": {"$in": ["EUR", "GBP"]}}}), true),
            (json!({"data": {"currency": {"$nin": ["EUR"]}}}), false),
            (
                json!({"data": {"email": {"$endsWith": "@shop.example"}}}),
                true,
            ),
            (json!({"data": {"email": {"$startsWith": "b"}}}), false),
            (json!({"data": {"coupon": {"$exist": false}}}), true),
            (json!({"data": {"coupon": {"$exist": true}}}), false),
            (json!({"data": {"coupon": "X"}}), false),
            (json!({"data": {"coupon": {"$neq": "X"}}}), true),
            (
                json!({"$or": [{"type": "invoice.created"}, {"line": {"product_id": "prod_1"}}]}),
                true,
            ),
            (
                json!({"$and": [{"type": "order.paid"}, {"data": {"amount": {"$lt": 100}}}]}),
                false,
            ),
            (json!({"$not": {"type": "order.paid"}}), false),
            (json!({"data": {"amount": {"$not": {"$lt": 1000}}}}), true),
            (json!({"data": {"tags": ["vip"]}}), true),
            (json!({"data": {"amount": {"$gt": "1000"}}}), false),
            (json!({}), true),
        ] {
            assert_eq!(matches(filter.clone(), body.clone()), expected, "{filter}");
        }
    }

    #[test]
    fn refusals_name_the_path() {
        for (filter, field) in [
            (json!("data"), "filter"),
            (
                json!({"data": {"amount": {"$gte": true}}}),
                "filter.data.amount.$gte",
            ),
            (json!({"data": {"$foo": 1}}), "filter.data.$foo"),
            (json!({"data": {"c": {"$in": "EUR"}}}), "filter.data.c.$in"),
            (json!({"$or": []}), "filter.$or"),
            (
                json!({"$and": [{"a": {"$exist": "yes"}}]}),
                "filter.$and[0].a.$exist",
            ),
            (
                json!({"data": {"e": {"$endsWith": 5}}}),
                "filter.data.e.$endsWith",
            ),
        ] {
            assert_eq!(Filter::parse(&filter).unwrap_err().field, field, "{filter}");
        }
        let mut deep = json!(1);
        for _ in 0..20 {
            deep = json!({ "a": deep });
        }
        assert!(Filter::parse(&deep).is_err());
    }
}
