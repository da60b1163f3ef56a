//! Integration rules: which events a merchant wants, and where to send them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{FieldError, FieldErrorKind, check_id};
use crate::filter::Filter;
use crate::id::{RuleId, TenantId};
use crate::rate::MAX_RATE_LIMIT;
use crate::target::{TargetError, TargetPolicy};
use crate::time::Timestamp;
use crate::trigger::{Trigger, UnknownTrigger};

/// What a rule is about: everything of its trigger, or one product, payment
/// page or one-click upsell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Scope {
    Universal,
    Product {
        #[cfg_attr(feature = "openapi", schema(value_type = crate::error::IdText))]
        id: String,
    },
    PaymentPage {
        #[cfg_attr(feature = "openapi", schema(value_type = crate::error::IdText))]
        id: String,
    },
    Upsell {
        #[cfg_attr(feature = "openapi", schema(value_type = crate::error::IdText))]
        id: String,
    },
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

/// A merchant's rule. The API's JSON is the API crate's `RuleOut`; the stored
/// form is [`crate::record`]'s.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub id: RuleId,
    pub tenant_id: TenantId,
    pub name: String,
    pub trigger: Trigger,
    pub url: String,
    pub scope: Scope,
    pub per_order_line: bool,
    pub first_payment_only: bool,
    pub enabled: bool,
    pub created_at: Timestamp,
    pub options: RuleOptions,
    /// Why Hookline disabled the rule (`failing`), until it is enabled again.
    pub disabled_reason: Option<DisabledReason>,
    pub disabled_at: Option<Timestamp>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum DisabledReason {
    /// Its deliveries failed without a success for `HOOKLINE_DISABLE_AFTER`.
    Failing,
    /// Its receiver answered 410 Gone, or asked to be disabled
    /// (`webhook-delivery: disable`).
    Gone,
}

/// What a rule adds to its deliveries beyond Plug&Pay's fields.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleOptions {
    /// Only events whose delivered body meets it make a delivery.
    pub filter: Option<Filter>,
    /// The full body, or Plug&Pay's thin V2 envelope.
    pub payload: PayloadFormat,
    /// Added to every delivery; Hookline's own headers cannot be set.
    pub headers: BTreeMap<String, String>,
    /// At most this many deliveries a second; excess ones wait.
    pub rate_limit: Option<u32>,
}

/// Which body a rule's deliveries carry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    pub fn new(id: RuleId, tenant_id: TenantId, draft: RuleDraft, created_at: Timestamp) -> Rule {
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

    /// Disables the rule for `reason`, at `at`; false when there is nothing
    /// to disable: it is disabled already, or it is a `rule.disabled` rule
    /// failing, which is never disabled for it, so an alert rule cannot set
    /// off a loop. A receiver that says it is gone is believed, alert rule
    /// or not.
    pub fn disable(&mut self, reason: DisabledReason, at: Timestamp) -> bool {
        let alert_failing =
            reason == DisabledReason::Failing && self.trigger == Trigger::RuleDisabled;
        if !self.enabled || alert_failing {
            return false;
        }
        self.enabled = false;
        self.disabled_reason = Some(reason);
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

/// The longest rule name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// The longest header name a rule adds, in bytes (a token is ASCII), and
/// the longest value, in characters.
pub const MAX_HEADER_NAME_BYTES: usize = 100;
pub const MAX_HEADER_VALUE_CHARS: usize = 1000;

/// A rule's name: printed by the CLI and the dashboard, so bounded and free
/// of escape sequences.
pub fn check_name(name: &str) -> Result<(), FieldError> {
    if name.trim().is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(FieldError::invalid(
            "name",
            format!("must be 1 to {MAX_NAME_CHARS} characters and not blank"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(FieldError::invalid(
            "name",
            "must not contain control characters",
        ));
    }
    Ok(())
}

/// A trigger named by a rule: unknown names are their own kind (422).
pub fn parse_trigger(name: &str) -> Result<Trigger, FieldError> {
    name.parse().map_err(|e: UnknownTrigger| FieldError {
        kind: FieldErrorKind::UnknownType,
        field: "trigger".into(),
        message: e.to_string(),
    })
}

/// A webhook URL as the policy lets it be reached, normalized. One that is
/// well formed but refused for what it names or becomes is its own kind
/// (422): a host at an address Hookline may not call, or a URL that
/// normalizing (punycode, percent-encoding) makes longer than is stored.
pub fn check_url(url: &str, policy: &TargetPolicy) -> Result<String, FieldError> {
    policy.check_url(url).map(|u| u.to_string()).map_err(|e| {
        let kind = match e {
            TargetError::Forbidden { .. } => FieldErrorKind::Refused("address_refused"),
            TargetError::GrowsTooLong => FieldErrorKind::Refused("url_too_long"),
            _ => FieldErrorKind::Invalid,
        };
        FieldError {
            kind,
            field: "url".into(),
            message: e.to_string(),
        }
    })
}

pub fn check_scope(scope: &Scope) -> Result<(), FieldError> {
    match scope {
        Scope::Universal => Ok(()),
        Scope::Product { id } | Scope::PaymentPage { id } | Scope::Upsell { id } => {
            check_id("scope.id", id)
        }
    }
}

/// Header names Hookline sets itself or the connection owns: a rule cannot
/// set them, nor any name that starts with [`RESERVED_HEADER_PREFIX`].
pub const RESERVED_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "host",
    "user-agent",
    "transfer-encoding",
    "connection",
    "te",
    "trailer",
    "upgrade",
    "keep-alive",
    "proxy-connection",
];
pub const RESERVED_HEADER_PREFIX: &str = "webhook-";

/// The characters of an HTTP token (RFC 9110), a header name's.
const TOKEN_PUNCTUATION: &str = "!#$%&'*+-.^_`|~";

fn reserved_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name.starts_with(RESERVED_HEADER_PREFIX) || RESERVED_HEADERS.contains(&name.as_str())
}

pub fn check_headers(headers: &BTreeMap<String, String>) -> Result<(), FieldError> {
    if headers.len() > MAX_RULE_HEADERS {
        return Err(FieldError::invalid(
            "headers",
            format!("may hold at most {MAX_RULE_HEADERS} headers"),
        ));
    }
    let token = |c: char| c.is_ascii_alphanumeric() || TOKEN_PUNCTUATION.contains(c);
    for (name, value) in headers {
        let field = format!("headers.{name}");
        if name.is_empty() || name.len() > MAX_HEADER_NAME_BYTES || !name.chars().all(token) {
            return Err(FieldError::invalid(field, "is not a valid header name"));
        }
        if reserved_header(name) {
            return Err(FieldError::invalid(
                field,
                "is set by Hookline and cannot be changed",
            ));
        }
        if value.chars().count() > MAX_HEADER_VALUE_CHARS
            || value.chars().any(|c| c.is_control() && c != '\t')
        {
            return Err(FieldError::invalid(
                field,
                format!(
                    "must be at most {MAX_HEADER_VALUE_CHARS} characters without control characters (no CR or LF)"
                ),
            ));
        }
    }
    Ok(())
}

pub fn check_rate_limit(per_second: u32) -> Result<(), FieldError> {
    if (1..=MAX_RATE_LIMIT).contains(&per_second) {
        Ok(())
    } else {
        Err(FieldError::invalid(
            "rate_limit",
            format!(
                "must be a whole number of deliveries a second from 1 to {MAX_RATE_LIMIT}, or null"
            ),
        ))
    }
}

/// How the OpenAPI document describes what these checks accept, read from
/// the same limits and lists.
#[cfg(feature = "openapi")]
pub mod described {
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};

    use crate::error::CONTROL_CHARACTERS;
    use crate::rule::{
        MAX_HEADER_NAME_BYTES, MAX_HEADER_VALUE_CHARS, MAX_NAME_CHARS, MAX_RULE_HEADERS,
        RESERVED_HEADER_PREFIX, RESERVED_HEADERS, TOKEN_PUNCTUATION,
    };

    /// A rule's name in the document.
    pub struct RuleName;

    impl utoipa::PartialSchema for RuleName {
        fn schema() -> RefOr<Schema> {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(MAX_NAME_CHARS))
                // Not blank, and no control character anywhere.
                .pattern(Some(format!(
                    r"^[^{c}]*[^\s{c}][^{c}]*$",
                    c = CONTROL_CHARACTERS
                )))
                .into()
        }
    }

    impl utoipa::ToSchema for RuleName {}

    /// A webhook URL in the document.
    pub struct WebhookUrl;

    impl utoipa::PartialSchema for WebhookUrl {
        fn schema() -> RefOr<Schema> {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(utoipa::openapi::SchemaFormat::Custom("uri".into())))
                .max_length(Some(crate::target::MAX_URL_LEN))
                // http or https, a host, no credentials.
                .pattern(Some(r"^[hH][tT][tT][pP][sS]?://[^/?#@\s]+([/?#][^\s]*)?$"))
                .description(Some(
                    "An http or https URL. A host at a private, loopback or other non-public \
                     address is refused (422 `address_refused`) unless the server allows private \
                     targets, and so is a URL that normalizing (punycode, percent-encoding) makes \
                     longer than 2000 bytes (422 `url_too_long`).",
                ))
                .into()
        }
    }

    impl utoipa::ToSchema for WebhookUrl {}

    /// The headers a rule adds, in the document.
    pub struct RuleHeaders;

    impl utoipa::PartialSchema for RuleHeaders {
        fn schema() -> RefOr<Schema> {
            let any_case = |text: &str| -> String {
                text.chars()
                    .map(|c| {
                        if c.is_ascii_alphabetic() {
                            format!("[{}{}]", c.to_ascii_lowercase(), c.to_ascii_uppercase())
                        } else {
                            format!("\\{c}")
                        }
                    })
                    .collect()
            };
            let reserved: Vec<String> = RESERVED_HEADERS.iter().map(|h| any_case(h)).collect();
            let token: String = TOKEN_PUNCTUATION
                .chars()
                .map(|c| format!("\\{c}"))
                .collect();
            let name = format!(
                "^(?!{prefix}|(?:{names})$)[0-9A-Za-z{token}]{{1,{MAX_HEADER_NAME_BYTES}}}$",
                prefix = any_case(RESERVED_HEADER_PREFIX),
                names = reserved.join("|"),
            );
            let value = ObjectBuilder::new()
                .schema_type(Type::String)
                .max_length(Some(MAX_HEADER_VALUE_CHARS))
                .pattern(Some(r"^[^\u0000-\u0008\u000a-\u001f\u007f-\u009f]*$"));
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .property_names(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .pattern(Some(name)),
                ))
                .additional_properties(Some(value))
                .max_properties(Some(MAX_RULE_HEADERS))
                .description(Some(
                    "Added to every delivery. Names are HTTP tokens; Hookline's own \
                     (`webhook-*`, `content-type`, `host`, ...) cannot be set. Values are \
                     at most 1000 characters, without control characters but tab.",
                ))
                .into()
        }
    }

    impl utoipa::ToSchema for RuleHeaders {}
}

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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft(trigger: Trigger) -> RuleDraft {
        RuleDraft::new("n", trigger, "https://e.com/", Scope::Universal)
    }

    #[test]
    fn only_enabled_rules_of_other_triggers_are_disabled_for_failing() {
        let at = Timestamp::from_millis(5);
        let mut paid = Rule::new(
            RuleId::stored("r"),
            TenantId::stored("t"),
            draft(Trigger::OrderPaid),
            Timestamp::default(),
        );
        assert!(paid.disable(DisabledReason::Failing, at));
        assert_eq!(
            (paid.enabled, paid.disabled_reason, paid.disabled_at),
            (false, Some(DisabledReason::Failing), Some(at))
        );
        assert!(!paid.disable(DisabledReason::Failing, at), "once");
        let mut alerts = Rule::new(
            RuleId::stored("a"),
            TenantId::stored("t"),
            draft(Trigger::RuleDisabled),
            Timestamp::default(),
        );
        assert!(!alerts.disable(DisabledReason::Failing, at));
        assert!(alerts.enabled);
        let mut gone_alerts = alerts.clone();
        assert!(
            gone_alerts.disable(DisabledReason::Gone, at),
            "a gone receiver is believed"
        );
        assert_eq!(gone_alerts.disabled_reason, Some(DisabledReason::Gone));
        paid.apply(RulePatch {
            enabled: Some(true),
            ..Default::default()
        });
        assert_eq!((paid.enabled, paid.disabled_reason), (true, None));
    }

    #[test]
    fn a_patch_changes_only_what_it_names() {
        let mut rule = Rule::new(
            RuleId::stored("r"),
            TenantId::stored("t"),
            draft(Trigger::OrderPaid),
            Timestamp::default(),
        );
        rule.apply(RulePatch {
            enabled: Some(false),
            scope: Some(Scope::Upsell { id: "u1".into() }),
            ..Default::default()
        });
        assert!(!rule.enabled);
        assert_eq!(rule.scope, Scope::Upsell { id: "u1".into() });
        assert_eq!(rule.name, "n");
    }

    #[test]
    fn the_checks_name_their_field() {
        let policy = TargetPolicy {
            allow_private: false,
        };
        assert_eq!(check_name(" ").unwrap_err().field, "name");
        assert_eq!(check_name("a\u{1b}[2J").unwrap_err().field, "name");
        assert_eq!(
            parse_trigger("order.x").unwrap_err().kind,
            FieldErrorKind::UnknownType
        );
        assert_eq!(
            check_url("ftp://e.com", &policy).unwrap_err().kind,
            FieldErrorKind::Invalid
        );
        assert_eq!(
            check_url("http://10.0.0.1/", &policy).unwrap_err().kind,
            FieldErrorKind::Refused("address_refused")
        );
        let grows = format!("https://e.com/{}", "é".repeat(1000));
        assert_eq!(
            check_url(&grows, &policy).unwrap_err().kind,
            FieldErrorKind::Refused("url_too_long")
        );
        assert_eq!(
            check_scope(&Scope::Product { id: String::new() })
                .unwrap_err()
                .field,
            "scope.id"
        );
        let headers = BTreeMap::from([("Webhook-Id".to_owned(), "x".to_owned())]);
        assert_eq!(
            check_headers(&headers).unwrap_err().field,
            "headers.Webhook-Id"
        );
        assert!(check_rate_limit(0).is_err() && check_rate_limit(MAX_RATE_LIMIT).is_ok());
    }
}
