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

/// The deepest a filter may nest, the most nodes it may hold (every key,
/// list item and `$in`/`$nin` value counts) and its size as JSON, so that a
/// rule cannot make routing expensive: one evaluation visits each node at
/// most once.
pub const MAX_DEPTH: usize = 16;
pub const MAX_NODES: usize = 256;
pub const MAX_BYTES: usize = 4096;

/// A checked filter, and the JSON it was written as.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    source: Value,
    condition: Condition,
    /// How many nodes the filter holds: what one evaluation costs at most.
    nodes: usize,
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
        // Checked before the walk, so an oversized filter costs no parsing.
        let size = serde_json::to_string(source).map_or(usize::MAX, |s| s.len());
        if size > MAX_BYTES {
            return Err(invalid(
                "filter",
                &format!("is {size} bytes as JSON; at most {MAX_BYTES}"),
            ));
        }
        let condition = object_condition(object, "filter", 0, &mut nodes)?;
        Ok(Filter {
            source: source.clone(),
            condition,
            nodes,
        })
    }

    /// How many nodes the filter holds: the work of one evaluation.
    pub fn nodes(&self) -> usize {
        self.nodes
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
    /// How many top-level fields the body has, so that a condition on the
    /// body itself is judged field by field, never by building a copy.
    fn field_count(&self) -> usize;
}

impl Body for Value {
    fn field(&self, name: &str) -> Option<&Value> {
        self.get(name)
    }
    fn field_count(&self) -> usize {
        self.as_object().map_or(0, Map::len)
    }
}

fn invalid(path: &str, message: &str) -> FieldError {
    FieldError::invalid(path, message)
}

/// Counts one node toward [`MAX_NODES`].
fn count(nodes: &mut usize, path: &str) -> Result<(), FieldError> {
    *nodes += 1;
    if *nodes > MAX_NODES {
        return Err(invalid(
            path,
            "makes the filter too large (at most 256 nodes: keys, list items and values)",
        ));
    }
    Ok(())
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
        let here = format!("{path}.{key}");
        count(nodes, &here)?;
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
        other => {
            count_value(other, path, nodes)?;
            Ok(Condition::Compare(Op::Eq, other.clone()))
        }
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
            .map(|(i, c)| {
                let here = format!("{path}[{i}]");
                count(nodes, &here)?;
                value_condition(c, &here, depth + 1, nodes)
            })
            .collect()
    };
    let operand = OPERATORS
        .iter()
        .find(|(name, _)| *name == key)
        .map(|(_, operand)| *operand)
        .ok_or_else(|| {
            let names: Vec<&str> = OPERATORS.iter().map(|(name, _)| *name).collect();
            invalid(path, &format!("is not an operator ({})", names.join(", ")))
        })?;
    let op = match operand {
        Operand::Conditions(all) => {
            let conditions = list(value)?;
            return Ok(if all {
                Condition::All(conditions)
            } else {
                Condition::Any(conditions)
            });
        }
        Operand::Condition => {
            return value_condition(value, path, depth + 1, nodes)
                .map(|c| Condition::Not(Box::new(c)));
        }
        Operand::Bool => {
            return value
                .as_bool()
                .map(Condition::Exists)
                .ok_or_else(|| invalid(path, "must be true or false"));
        }
        Operand::Value(op) => op,
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
    count_value(value, path, nodes)?;
    Ok(Condition::Compare(op, value.clone()))
}

/// What an operator takes.
#[derive(Debug, Clone, Copy)]
enum Operand {
    /// A non-empty list of conditions: all (`$and`) or any (`$or`) hold.
    Conditions(bool),
    /// One condition that must not hold (`$not`).
    Condition,
    /// Whether the field is there (`$exist`).
    Bool,
    /// A value to compare with.
    Value(Op),
}

/// The operators by name: the parser and the OpenAPI document read this.
const OPERATORS: [(&str, Operand); 14] = [
    ("$eq", Operand::Value(Op::Eq)),
    ("$neq", Operand::Value(Op::Neq)),
    ("$gt", Operand::Value(Op::Gt)),
    ("$gte", Operand::Value(Op::Gte)),
    ("$lt", Operand::Value(Op::Lt)),
    ("$lte", Operand::Value(Op::Lte)),
    ("$in", Operand::Value(Op::In)),
    ("$nin", Operand::Value(Op::Nin)),
    ("$startsWith", Operand::Value(Op::StartsWith)),
    ("$endsWith", Operand::Value(Op::EndsWith)),
    ("$exist", Operand::Bool),
    ("$and", Operand::Conditions(true)),
    ("$or", Operand::Conditions(false)),
    ("$not", Operand::Condition),
];

/// A filter in the OpenAPI document: its grammar, with each operator's
/// operand, from [`OPERATORS`]. The budgets (nodes, bytes, depth) are in its
/// description; JSON Schema cannot count them.
#[cfg(feature = "openapi")]
pub struct FilterSchema;

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for FilterSchema {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use serde_json::json;
        use utoipa::openapi::schema::{Object, Schema};
        let condition = json!({"anyOf": [
            {"$ref": "#/components/schemas/Filter"},
            {"type": ["null", "boolean", "number", "string", "array"]},
        ]});
        let properties: Map<String, Value> = OPERATORS
            .iter()
            .map(|(name, operand)| {
                let schema = match operand {
                    Operand::Conditions(_) => {
                        json!({"type": "array", "minItems": 1, "items": condition})
                    }
                    Operand::Condition => condition.clone(),
                    Operand::Bool => json!({"type": "boolean"}),
                    Operand::Value(Op::Eq | Op::Neq) => json!({
                        "type": ["null", "boolean", "number", "string", "array", "object"]
                    }),
                    Operand::Value(Op::Gt | Op::Gte | Op::Lt | Op::Lte) => {
                        json!({"type": ["number", "string"]})
                    }
                    Operand::Value(Op::In | Op::Nin) => json!({"type": "array"}),
                    Operand::Value(Op::StartsWith | Op::EndsWith) => json!({"type": "string"}),
                };
                (name.to_string(), schema)
            })
            .collect();
        let description = format!(
            "A payload filter: nested objects follow the delivered body, a plain value means \
             equal, and keys that start with `$` are operators. At most {MAX_NODES} nodes \
             (keys, list items and values), {MAX_BYTES} bytes as JSON and {MAX_DEPTH} levels deep."
        );
        let mut object: Object = serde_json::from_value(json!({
            "type": "object",
            "description": description,
            "properties": properties,
            "additionalProperties": false,
        }))
        .unwrap_or_default();
        // Field names are any key that is not an operator; utoipa's object
        // has no `patternProperties`, so it goes in as an extension, which
        // is written out as it is.
        object
            .extensions
            .get_or_insert_with(Default::default)
            .insert("patternProperties".into(), json!({ "^(?!\\$)": condition }));
        Schema::Object(object).into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for FilterSchema {
    fn name() -> std::borrow::Cow<'static, str> {
        "Filter".into()
    }
}

/// Counts an operand's items: comparing with a list or an object visits
/// each of its values.
fn count_value(value: &Value, path: &str, nodes: &mut usize) -> Result<(), FieldError> {
    match value {
        Value::Array(items) => items.iter().try_for_each(|v| {
            count(nodes, path)?;
            count_value(v, path, nodes)
        }),
        Value::Object(fields) => fields.values().try_for_each(|v| {
            count(nodes, path)?;
            count_value(v, path, nodes)
        }),
        _ => Ok(()),
    }
}

/// [`eval`] on the body itself, which is always there.
fn eval_body(condition: &Condition, body: &dyn Body) -> bool {
    match condition {
        Condition::All(all) => all.iter().all(|c| eval_body(c, body)),
        Condition::Any(any) => any.iter().any(|c| eval_body(c, body)),
        Condition::Not(c) => !eval_body(c, body),
        Condition::Field(name, c) => eval(c, body.field(name)),
        Condition::Exists(wanted) => *wanted,
        Condition::Compare(op, operand) => compare_body(*op, body, operand),
    }
}

/// [`compare`] with the body itself, an object: only an object operand can
/// equal it, and nothing orders or prefixes it.
fn compare_body(op: Op, body: &dyn Body, operand: &Value) -> bool {
    let equals = |o: &Value| {
        o.as_object().is_some_and(|fields| {
            fields.len() == body.field_count()
                && fields.iter().all(|(k, v)| body.field(k) == Some(v))
        })
    };
    match op {
        Op::Eq => equals(operand),
        Op::Neq => !equals(operand),
        Op::In => operand.as_array().is_some_and(|l| l.iter().any(equals)),
        Op::Nin => operand.as_array().is_some_and(|l| !l.iter().any(equals)),
        Op::Gt | Op::Gte | Op::Lt | Op::Lte | Op::StartsWith | Op::EndsWith => false,
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

    /// Every node counts toward the budget, list items and `$in` values too,
    /// so a filter's evaluation cost is bounded by what its save accepted.
    #[test]
    fn every_node_counts_toward_the_budget() {
        let zeros = |n: usize| Value::Array(vec![json!(0); n]);
        for (filter, field) in [
            (json!({ "$or": zeros(300) }), "filter.$or[255]"),
            (
                json!({"data": {"c": {"$in": zeros(300)}}}),
                "filter.data.c.$in",
            ),
            (
                json!({"data": {"tags": {"$eq": zeros(300)}}}),
                "filter.data.tags.$eq",
            ),
        ] {
            let err = Filter::parse(&filter).unwrap_err();
            assert_eq!(err.field, field, "{err}");
            assert!(err.message.contains("256 nodes"), "{err}");
        }
        let fits = Filter::parse(&json!({"data": {"c": {"$in": zeros(250)}}})).unwrap();
        assert_eq!(fits.nodes(), 253);
        let big = json!({"data": {"note": {"$eq": "x".repeat(5000)}}});
        let err = Filter::parse(&big).unwrap_err();
        assert_eq!(
            (err.field.as_str(), err.message.contains("4096")),
            ("filter", true)
        );
    }

    /// A condition on the body itself is judged field by field, as equality
    /// with the whole body always was.
    #[test]
    fn conditions_on_the_body_itself() {
        let body = json!({"type": "order.paid", "event_id": "e"});
        for (filter, expected) in [
            (json!({"$or": [0, 1]}), false),
            (
                json!({"$or": [{"type": "order.paid", "event_id": "e"}]}),
                true,
            ),
            (
                json!({"$eq": {"type": "order.paid", "event_id": "e"}}),
                true,
            ),
            (json!({"$eq": {"type": "order.paid"}}), false),
            (json!({"$neq": {"type": "order.paid"}}), true),
            (
                json!({"$in": [1, {"event_id": "e", "type": "order.paid"}]}),
                true,
            ),
            (
                json!({"$nin": [{"event_id": "e", "type": "order.paid"}]}),
                false,
            ),
            (json!({"$gt": 1}), false),
        ] {
            assert_eq!(matches(filter.clone(), body.clone()), expected, "{filter}");
        }
    }
}
