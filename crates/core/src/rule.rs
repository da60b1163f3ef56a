//! Integration rules: which events a merchant wants, and where to send them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

use crate::error::{FieldError, FieldErrorKind, check_id};
use crate::filter::Filter;
use crate::rate::MAX_RATE_LIMIT;
use crate::target::TargetPolicy;
use crate::time::Timestamp;
use crate::trigger::{Trigger, known_triggers};

/// What a rule is about: everything of its trigger, or one product, payment
/// page or one-click upsell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Scope {
    Universal,
    Product { id: String },
    PaymentPage { id: String },
    Upsell { id: String },
}

impl Scope {
    /// The key a store files the rule under, so that an event's candidate
    /// rules are found by [`crate::fanout::scope_keys`] without reading the
    /// others. `*` for universal rules; a kind and an id otherwise (ids
    /// cannot hold `:` ambiguously: the kind comes first and is fixed).
    pub fn key(&self) -> String {
        match self {
            Scope::Universal => "*".to_owned(),
            Scope::Product { id } => format!("product:{id}"),
            Scope::PaymentPage { id } => format!("payment_page:{id}"),
            Scope::Upsell { id } => format!("upsell:{id}"),
        }
    }
}

/// A rule as the API shows it (`Serialize` is the API's JSON; the stored
/// form is [`crate::record`]'s).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rule {
    pub id: String,
    #[serde(skip)]
    pub tenant_id: String,
    pub name: String,
    pub trigger: Trigger,
    pub url: String,
    pub scope: Scope,
    pub per_order_line: bool,
    pub first_payment_only: bool,
    pub enabled: bool,
    pub created_at: Timestamp,
    #[serde(flatten)]
    pub options: RuleOptions,
    /// Why Hookline disabled the rule (`failing`), until it is enabled again.
    pub disabled_reason: Option<DisabledReason>,
    pub disabled_at: Option<Timestamp>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DisabledReason {
    /// Its deliveries failed without a success for `HOOKLINE_DISABLE_AFTER`.
    Failing,
}

/// What a rule adds to its deliveries beyond Plug&Pay's fields.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RuleOptions {
    /// Only events whose delivered body meets it make a delivery.
    #[serde(serialize_with = "filter_source")]
    pub filter: Option<Filter>,
    /// The full body, or Plug&Pay's thin V2 envelope.
    pub payload: PayloadFormat,
    /// Added to every delivery; Hookline's own headers cannot be set.
    pub headers: BTreeMap<String, String>,
    /// At most this many deliveries a second; excess ones wait.
    pub rate_limit: Option<u32>,
}

fn filter_source<S: Serializer>(filter: &Option<Filter>, s: S) -> Result<S::Ok, S::Error> {
    filter.as_ref().map(Filter::source).serialize(s)
}

/// Which body a rule's deliveries carry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadFormat {
    /// `{"type","timestamp","event_id","tenant_id","rule_id","data","line"?}`.
    #[default]
    Full,
    /// `{"trigger_type","triggerable_id","triggerable_type","sent_at",
    /// "tenant_id","rule_id","event_id","line"?}`: the receiver fetches the rest.
    Thin,
}

/// The most headers a rule adds.
pub const MAX_RULE_HEADERS: usize = 10;

/// A rule as a merchant posts it; `id`, tenant and time are Hookline's.
#[derive(Debug, Clone)]
pub struct RuleDraft {
    pub name: String,
    pub trigger: Trigger,
    pub url: String,
    pub scope: Scope,
    pub per_order_line: bool,
    pub first_payment_only: bool,
    pub enabled: bool,
    pub options: RuleOptions,
}

/// Any subset of a rule's fields, as PATCH takes them. An option set to
/// `null` goes back to its default.
#[derive(Debug, Clone, Default)]
pub struct RulePatch {
    pub name: Option<String>,
    pub trigger: Option<Trigger>,
    pub url: Option<String>,
    pub scope: Option<Scope>,
    pub per_order_line: Option<bool>,
    pub first_payment_only: Option<bool>,
    pub enabled: Option<bool>,
    pub filter: Option<Option<Filter>>,
    pub payload: Option<PayloadFormat>,
    pub headers: Option<BTreeMap<String, String>>,
    pub rate_limit: Option<Option<u32>>,
}

impl Rule {
    pub fn new(id: String, tenant_id: String, draft: RuleDraft, created_at: Timestamp) -> Rule {
        Rule {
            id,
            tenant_id,
            name: draft.name,
            trigger: draft.trigger,
            url: draft.url,
            scope: draft.scope,
            per_order_line: draft.per_order_line,
            first_payment_only: draft.first_payment_only,
            enabled: draft.enabled,
            created_at,
            options: draft.options,
            disabled_reason: None,
            disabled_at: None,
        }
    }

    /// Disables the rule for failing, at `at`; false when there is nothing
    /// to disable: it is disabled already, or it is a `rule.disabled` rule,
    /// which is never disabled, so an alert rule cannot set off a loop.
    pub fn disable_for_failing(&mut self, at: Timestamp) -> bool {
        if !self.enabled || self.trigger == Trigger::RuleDisabled {
            return false;
        }
        self.enabled = false;
        self.disabled_reason = Some(DisabledReason::Failing);
        self.disabled_at = Some(at);
        true
    }

    pub fn apply(&mut self, patch: RulePatch) {
        let RulePatch {
            name,
            trigger,
            url,
            scope,
            per_order_line,
            first_payment_only,
            enabled,
            filter,
            payload,
            headers,
            rate_limit,
        } = patch;
        if let Some(v) = name {
            self.name = v;
        }
        if let Some(v) = trigger {
            self.trigger = v;
        }
        if let Some(v) = url {
            self.url = v;
        }
        if let Some(v) = scope {
            self.scope = v;
        }
        if let Some(v) = per_order_line {
            self.per_order_line = v;
        }
        if let Some(v) = first_payment_only {
            self.first_payment_only = v;
        }
        if let Some(v) = enabled {
            self.enabled = v;
            if v {
                self.disabled_reason = None;
                self.disabled_at = None;
            }
        }
        if let Some(v) = filter {
            self.options.filter = v;
        }
        if let Some(v) = payload {
            self.options.payload = v;
        }
        if let Some(v) = headers {
            self.options.headers = v;
        }
        if let Some(v) = rate_limit {
            self.options.rate_limit = v;
        }
    }
}

fn object(body: &[u8]) -> Result<serde_json::Map<String, Value>, FieldError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(FieldError::invalid("body", "must be a JSON object")),
        Err(e) => Err(FieldError::invalid(
            "body",
            format!("is not valid JSON: {e}"),
        )),
    }
}

fn string(field: &str, v: &Value) -> Result<String, FieldError> {
    v.as_str()
        .map(str::to_owned)
        .ok_or_else(|| FieldError::invalid(field, "must be a string"))
}

fn boolean(field: &str, v: &Value) -> Result<bool, FieldError> {
    v.as_bool()
        .ok_or_else(|| FieldError::invalid(field, "must be true or false"))
}

fn name(v: &Value) -> Result<String, FieldError> {
    let s = string("name", v)?;
    if s.trim().is_empty() || s.len() > 200 {
        return Err(FieldError::invalid(
            "name",
            "must be 1 to 200 bytes and not blank",
        ));
    }
    // A name is printed by the CLI and the dashboard: no escape sequences.
    if s.chars().any(char::is_control) {
        return Err(FieldError::invalid(
            "name",
            "must not contain control characters",
        ));
    }
    Ok(s)
}

fn trigger(v: &Value) -> Result<Trigger, FieldError> {
    let s = string("trigger", v)?;
    s.parse().map_err(|_| FieldError {
        kind: FieldErrorKind::UnknownType,
        field: "trigger".into(),
        message: format!(
            "unknown trigger {s:?}; expected one of {}",
            known_triggers(|_| true)
        ),
    })
}

fn scope(v: &Value) -> Result<Scope, FieldError> {
    let scope: Scope = serde_json::from_value(v.clone()).map_err(|_| {
        FieldError::invalid(
            "scope",
            r#"must be {"type":"universal"} or {"type":"product"|"payment_page"|"upsell","id":"..."}"#,
        )
    })?;
    match &scope {
        Scope::Universal => {}
        Scope::Product { id } | Scope::PaymentPage { id } | Scope::Upsell { id } => {
            check_id("scope.id", id)?
        }
    }
    Ok(scope)
}

fn url(v: &Value, policy: &TargetPolicy) -> Result<String, FieldError> {
    let s = string("url", v)?;
    policy
        .check_url(&s)
        .map(|u| u.to_string())
        .map_err(|e| FieldError::invalid("url", e.to_string()))
}

fn filter(v: &Value) -> Result<Option<Filter>, FieldError> {
    match v {
        Value::Null => Ok(None),
        other => Filter::parse(other).map(Some),
    }
}

fn payload(v: &Value) -> Result<PayloadFormat, FieldError> {
    match v {
        Value::Null => Ok(PayloadFormat::Full),
        Value::String(s) if s == "full" => Ok(PayloadFormat::Full),
        Value::String(s) if s == "thin" => Ok(PayloadFormat::Thin),
        _ => Err(FieldError::invalid(
            "payload",
            r#"must be "full" or "thin""#,
        )),
    }
}

/// Names Hookline sets itself or the connection owns: a rule cannot set them.
fn reserved_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name.starts_with("webhook-")
        || matches!(
            name.as_str(),
            "content-type"
                | "content-length"
                | "host"
                | "user-agent"
                | "transfer-encoding"
                | "connection"
                | "te"
                | "trailer"
                | "upgrade"
                | "keep-alive"
                | "proxy-connection"
        )
}

fn headers(v: &Value) -> Result<BTreeMap<String, String>, FieldError> {
    let object = match v {
        Value::Null => return Ok(BTreeMap::new()),
        Value::Object(o) => o,
        _ => {
            return Err(FieldError::invalid(
                "headers",
                "must be an object of names and values",
            ));
        }
    };
    if object.len() > MAX_RULE_HEADERS {
        return Err(FieldError::invalid(
            "headers",
            "may hold at most 10 headers",
        ));
    }
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    let mut out = BTreeMap::new();
    for (name, value) in object {
        let field = format!("headers.{name}");
        if name.is_empty() || name.len() > 100 || !name.chars().all(token) {
            return Err(FieldError::invalid(field, "is not a valid header name"));
        }
        if reserved_header(name) {
            return Err(FieldError::invalid(
                field,
                "is set by Hookline and cannot be changed",
            ));
        }
        let value = value
            .as_str()
            .ok_or_else(|| FieldError::invalid(&field, "must be a string"))?;
        if value.len() > 1000 || value.chars().any(|c| c.is_control() && c != '\t') {
            return Err(FieldError::invalid(
                field,
                "must be at most 1000 bytes without control characters (no CR or LF)",
            ));
        }
        out.insert(name.clone(), value.to_owned());
    }
    Ok(out)
}

fn rate_limit(v: &Value) -> Result<Option<u32>, FieldError> {
    match v {
        Value::Null => Ok(None),
        v => v
            .as_u64()
            .filter(|n| (1..=u64::from(MAX_RATE_LIMIT)).contains(n))
            .map(|n| Some(n as u32))
            .ok_or_else(|| {
                FieldError::invalid(
                    "rate_limit",
                    "must be a whole number of deliveries a second from 1 to 10000, or null",
                )
            }),
    }
}

fn not_a_field(name: &str) -> FieldError {
    match name {
        "id" | "created_at" | "disabled_reason" | "disabled_at" => {
            FieldError::invalid(name, "is Hookline's and cannot be set")
        }
        _ => FieldError::invalid(name, "is not a rule field"),
    }
}

/// The fields a rule body may have; others are refused by name so a typo or
/// an option Hookline does not have is never silently dropped.
pub const RULE_FIELDS: &[&str] = &[
    "name",
    "trigger",
    "url",
    "scope",
    "per_order_line",
    "first_payment_only",
    "enabled",
    "filter",
    "payload",
    "headers",
    "rate_limit",
];

impl RuleDraft {
    /// A rule with what a POST leaves out at its defaults: for the whole
    /// order, on every payment, enabled, with no options.
    pub fn new(name: &str, trigger: Trigger, url: &str, scope: Scope) -> RuleDraft {
        RuleDraft {
            name: name.to_owned(),
            trigger,
            url: url.to_owned(),
            scope,
            per_order_line: false,
            first_payment_only: false,
            enabled: true,
            options: RuleOptions::default(),
        }
    }

    /// Reads a POST body: `name`, `trigger`, `url` required; `scope` defaults
    /// to universal, the options to false and `enabled` to true.
    pub fn from_json(body: &[u8], policy: &TargetPolicy) -> Result<RuleDraft, FieldError> {
        let map = object(body)?;
        if let Some(unknown) = map.keys().find(|k| !RULE_FIELDS.contains(&k.as_str())) {
            return Err(not_a_field(unknown));
        }
        let option = |f: &str| map.get(f).unwrap_or(&Value::Null);
        let need = |f: &str| {
            map.get(f)
                .filter(|v| !v.is_null())
                .ok_or_else(|| FieldError::invalid(f, "is required"))
        };
        let opt_bool = |f: &str, default: bool| match map.get(f) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => boolean(f, v),
        };
        Ok(RuleDraft {
            name: name(need("name")?)?,
            trigger: trigger(need("trigger")?)?,
            url: url(need("url")?, policy)?,
            scope: match map.get("scope") {
                None | Some(Value::Null) => Scope::Universal,
                Some(v) => scope(v)?,
            },
            per_order_line: opt_bool("per_order_line", false)?,
            first_payment_only: opt_bool("first_payment_only", false)?,
            enabled: opt_bool("enabled", true)?,
            options: RuleOptions {
                filter: filter(option("filter"))?,
                payload: payload(option("payload"))?,
                headers: headers(option("headers"))?,
                rate_limit: rate_limit(option("rate_limit"))?,
            },
        })
    }
}

impl RulePatch {
    /// Reads a PATCH body. Fields Hookline owns (`id`) or does not know are
    /// refused by name, so a typo does not silently change nothing.
    pub fn from_json(body: &[u8], policy: &TargetPolicy) -> Result<RulePatch, FieldError> {
        let map = object(body)?;
        let mut patch = RulePatch::default();
        for (k, v) in &map {
            match k.as_str() {
                "name" => patch.name = Some(name(v)?),
                "trigger" => patch.trigger = Some(trigger(v)?),
                "url" => patch.url = Some(url(v, policy)?),
                "scope" => patch.scope = Some(scope(v)?),
                "per_order_line" => patch.per_order_line = Some(boolean(k, v)?),
                "first_payment_only" => patch.first_payment_only = Some(boolean(k, v)?),
                "enabled" => patch.enabled = Some(boolean(k, v)?),
                "filter" => patch.filter = Some(filter(v)?),
                "payload" => patch.payload = Some(payload(v)?),
                "headers" => patch.headers = Some(headers(v)?),
                "rate_limit" => patch.rate_limit = Some(rate_limit(v)?),
                _ => return Err(not_a_field(k)),
            }
        }
        Ok(patch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> TargetPolicy {
        TargetPolicy {
            allow_private: false,
        }
    }

    #[test]
    fn draft_defaults_and_shape() {
        let d = RuleDraft::from_json(
            br#"{"name":"n","trigger":"order.paid","url":"https://example.com/hook"}"#,
            &policy(),
        )
        .unwrap();
        assert_eq!(d.scope, Scope::Universal);
        assert!(d.enabled && !d.per_order_line && !d.first_payment_only);
        let rule = Rule::new("rul_1".into(), "t".into(), d, Timestamp::from_millis(0));
        let json = serde_json::to_value(&rule).unwrap();
        assert_eq!(json["scope"], serde_json::json!({"type":"universal"}));
        assert!(json.get("tenant_id").is_none());
    }

    #[test]
    fn draft_errors_name_fields() {
        let p = policy();
        let e = |b: &str| RuleDraft::from_json(b.as_bytes(), &p).unwrap_err();
        assert_eq!(
            e(r#"{"trigger":"order.paid","url":"https://e.com"}"#).field,
            "name"
        );
        let t = e(r#"{"name":"n","trigger":"order.x","url":"https://e.com"}"#);
        assert_eq!(
            (t.field.as_str(), t.kind),
            ("trigger", FieldErrorKind::UnknownType)
        );
        assert_eq!(
            e(r#"{"name":"n","trigger":"order.paid","url":"ftp://e.com"}"#).field,
            "url"
        );
        assert_eq!(
            e(r#"{"name":"n","trigger":"order.paid","url":"http://10.0.0.1/"}"#).field,
            "url"
        );
        assert_eq!(
            e(r#"{"name":"n","trigger":"order.paid","url":"https://e.com","scope":{"type":"product"}}"#).field,
            "scope"
        );
        assert_eq!(
            e(r#"{"name":"n","trigger":"order.paid","url":"https://e.com","enabled":"yes"}"#).field,
            "enabled"
        );
    }

    #[test]
    fn only_enabled_rules_of_other_triggers_are_disabled_for_failing() {
        let p = policy();
        let draft = |trigger: &str| {
            RuleDraft::from_json(
                format!(r#"{{"name":"n","trigger":"{trigger}","url":"https://e.com"}}"#).as_bytes(),
                &p,
            )
            .unwrap()
        };
        let at = Timestamp::from_millis(5);
        let mut paid = Rule::new(
            "r".into(),
            "t".into(),
            draft("order.paid"),
            Timestamp::default(),
        );
        assert!(paid.disable_for_failing(at));
        assert_eq!(
            (paid.enabled, paid.disabled_reason, paid.disabled_at),
            (false, Some(DisabledReason::Failing), Some(at))
        );
        assert!(!paid.disable_for_failing(at), "once");
        let mut alerts = Rule::new(
            "a".into(),
            "t".into(),
            draft("rule.disabled"),
            Timestamp::default(),
        );
        assert!(!alerts.disable_for_failing(at));
        assert!(alerts.enabled);
        paid.apply(RulePatch {
            enabled: Some(true),
            ..Default::default()
        });
        assert_eq!((paid.enabled, paid.disabled_reason), (true, None));
    }

    #[test]
    fn patch_applies_subset_and_refuses_unknown() {
        let p = policy();
        let patch = RulePatch::from_json(
            br#"{"enabled":false,"scope":{"type":"upsell","id":"u1"}}"#,
            &p,
        )
        .unwrap();
        let mut rule = Rule::new(
            "r".into(),
            "t".into(),
            RuleDraft::from_json(
                br#"{"name":"n","trigger":"order.paid","url":"https://e.com"}"#,
                &p,
            )
            .unwrap(),
            Timestamp::default(),
        );
        rule.apply(patch);
        assert!(!rule.enabled);
        assert_eq!(rule.scope, Scope::Upsell { id: "u1".into() });
        assert_eq!(rule.name, "n");
        assert_eq!(
            RulePatch::from_json(br#"{"id":"x"}"#, &p)
                .unwrap_err()
                .field,
            "id"
        );
    }
}
