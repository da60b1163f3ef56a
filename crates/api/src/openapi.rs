//! The API's OpenAPI 3.1 document, generated from the handlers' annotations
//! and the request and answer types they parse and return, and served at
//! `GET /openapi.json`.

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::{deliveries, events, health, keys, rules};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Hookline",
        description = "Plug&Pay-style business events in, signed Standard Webhooks out. \
            The platform posts events with the ingest token; each merchant manages their \
            rules, webhook key and delivery log with their tenant API key. \
            Errors are always `{\"error\": {\"code\", \"message\", \"field\"?}}`. \
            A request the schemas below refuse is answered 400 (`invalid`, `field` names what is wrong); \
            one they allow but the server cannot take, because of what it holds or may reach, \
            is answered 404, 409, 422 or 429 with a code that says why.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    paths(
        events::ingest,
        events::ingest_batch,
        rules::list,
        rules::create,
        rules::get,
        rules::update,
        rules::delete,
        rules::test,
        health::get,
        deliveries::recover,
        keys::current,
        keys::rotate,
        deliveries::list,
        deliveries::get,
        deliveries::retry,
    ),
    modifiers(&SecuritySchemes),
    tags(
        (name = "ingest", description = "The platform reports events (ingest token)."),
        (name = "rules", description = "A merchant's integration rules (tenant API key)."),
        (name = "webhook key", description = "The key deliveries are signed with (tenant API key)."),
        (name = "deliveries", description = "The delivery log, retry and recovery (tenant API key)."),
    )
)]
pub struct ApiDoc;

/// The two bearer schemes: the platform's ingest token, a tenant's API key.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for (name, about) in [
            (
                INGEST_TOKEN,
                "The platform's ingest token (HOOKLINE_INGEST_TOKEN, or the stack's secret).",
            ),
            (
                API_KEY,
                "A tenant's API key (hk_...); it also names the tenant.",
            ),
        ] {
            let mut scheme = Http::new(HttpAuthScheme::Bearer);
            scheme.description = Some(about.to_owned());
            components.add_security_scheme(name, SecurityScheme::Http(scheme));
        }
    }
}

pub const INGEST_TOKEN: &str = "ingest_token";
pub const API_KEY: &str = "api_key";

/// The document as served: the committed `docs/openapi.json`, which a test
/// holds equal to the one the annotations generate (`document`, in tests).
/// Served as committed, no binary links the code that generates it: 289
/// KiB less in the ingest function on arm64 (`infra/sam-build`).
pub const SERVED: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../docs/openapi.json"
));

/// The document the annotations generate, pretty-printed as
/// `docs/openapi.json` holds it.
#[cfg(test)]
pub fn document() -> &'static str {
    static DOCUMENT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        ApiDoc::openapi().to_pretty_json().unwrap_or_else(|e| {
            format!(r#"{{"error": "the OpenAPI document did not render: {e}"}}"#)
        })
    });
    &DOCUMENT
}

/// `GET /openapi.json`, without auth.
pub async fn serve() -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/json")], SERVED)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use hookline_core::delivery::{Attempt, Waiting};
    use hookline_core::trigger::trigger_names;
    use hookline_core::{Delivery, DeliveryStatus, Rule, RuleDraft, Scope, Timestamp, Trigger};
    use serde_json::Value;

    use super::document;
    use crate::deliveries::DeliveryOut;
    use crate::rules::RuleOut;

    fn doc() -> Value {
        serde_json::from_str(document()).unwrap()
    }

    fn schema(name: &str) -> Value {
        doc()["components"]["schemas"][name].clone()
    }

    fn properties(name: &str) -> BTreeSet<String> {
        keys(&schema(name)["properties"])
    }

    fn keys(v: &Value) -> BTreeSet<String> {
        v.as_object()
            .unwrap_or_else(|| panic!("{v} is not an object"))
            .keys()
            .cloned()
            .collect()
    }

    /// `HOOKLINE_WRITE_OPENAPI=1 cargo test -p hookline-api openapi` writes it.
    #[test]
    fn docs_openapi_json_is_the_document() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
        if std::env::var_os("HOOKLINE_WRITE_OPENAPI").is_some() {
            std::fs::write(path, document()).unwrap();
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == document(),
            "docs/openapi.json is not the document the API serves; \
             write it with HOOKLINE_WRITE_OPENAPI=1 cargo test -p hookline-api openapi"
        );
    }

    /// Every field an answer may carry is described, and only those: the
    /// optional ones (`line_id`, `waiting`, `last_failure`) are set here so
    /// they show.
    #[test]
    fn a_rule_a_delivery_and_a_health_answer_with_the_described_properties() {
        use hookline_core::id::{DeliveryId, EventId, RuleId, TenantId};
        let at = Timestamp::parse_rfc3339("2026-11-29T12:00:00Z").unwrap();
        let draft = RuleDraft::new(
            "paid",
            Trigger::OrderPaid,
            "https://example.com/hook",
            Scope::Universal,
        );
        let rule = RuleOut::from(Rule::new(
            RuleId::stored("rul_1"),
            TenantId::stored("t"),
            draft,
            at,
        ));
        assert_eq!(
            keys(&serde_json::to_value(&rule).unwrap()),
            properties("RuleOut")
        );

        let attempt = Attempt {
            at,
            status_code: Some(204),
            duration_ms: 3,
            error: None,
            response_body: None,
        };
        let delivery = DeliveryOut::from(Delivery {
            id: DeliveryId::stored("msg_1"),
            event_id: EventId::stored("evt_1"),
            rule_id: RuleId::stored("rul_1"),
            status: DeliveryStatus::Pending,
            line_id: Some("line_1".into()),
            created_at: at,
            attempt_count: 1,
            attempts: vec![attempt],
            waiting: Waiting::for_circuit(DeliveryStatus::Pending, Some(at)),
        });
        let json = serde_json::to_value(&delivery).unwrap();
        assert_eq!(keys(&json), properties("DeliveryOut"));
        assert_eq!(keys(&json["attempts"][0]), properties("AttemptOut"));
        assert_eq!(keys(&json["waiting"]), properties("WaitingOut"));

        let mut tally = hookline_core::traffic::Tally::default();
        tally.record(false, at, 40, Some("receiver answered 500"));
        let health = crate::health::RuleHealthOut::of(
            RuleId::stored("rul_1"),
            &hookline_core::ports::RuleHealth {
                buckets: vec![(hookline_core::traffic::bucket_of(at), tally)],
                ..Default::default()
            },
            at,
        );
        let json = serde_json::to_value(&health).unwrap();
        assert_eq!(keys(&json), properties("RuleHealthOut"));
        assert_eq!(keys(&json["last_failure"]), properties("FailureOut"));
        assert_eq!(keys(&json["last_day"]), properties("WindowOut"));
        assert_eq!(json["last_day"]["failures"], 1);
    }

    fn enum_of(schema_name: &str) -> Vec<Value> {
        schema(schema_name)["enum"]
            .as_array()
            .unwrap_or_else(|| panic!("{schema_name} is not an enum"))
            .clone()
    }

    /// The described enums are the core's, value for value.
    #[test]
    fn the_enums_are_the_cores() {
        let names = |accepted| -> Vec<Value> {
            trigger_names(accepted)
                .into_iter()
                .map(Value::from)
                .collect()
        };
        assert_eq!(enum_of("Trigger"), names(|_| true));
        assert_eq!(enum_of("PlatformTrigger"), names(Trigger::from_platform));
        assert!(enum_of("PlatformTrigger").len() < enum_of("Trigger").len());
        let statuses: Vec<Value> = DeliveryStatus::ALL
            .iter()
            .map(|s| serde_json::to_value(s).unwrap())
            .collect();
        assert_eq!(enum_of("DeliveryStatus"), statuses);
    }

    /// A field that may be left out or sent as null is nullable in the
    /// document, and one that may not be null is not.
    #[test]
    fn nullable_fields_are_described_as_nullable() {
        let nullable = |schema_name: &str, field: &str| -> bool {
            let property = &schema(schema_name)["properties"][field];
            let text = property.to_string();
            text.contains("\"null\"") || text.contains("\"nullable\":true")
        };
        for field in [
            "scope",
            "payload",
            "filter",
            "headers",
            "rate_limit",
            "enabled",
        ] {
            assert!(nullable("RuleIn", field), "RuleIn.{field}");
            assert!(nullable("RulePatchIn", field), "RulePatchIn.{field}");
        }
        for field in ["name", "trigger", "url"] {
            assert!(!nullable("RuleIn", field), "RuleIn.{field}");
            assert!(!nullable("RulePatchIn", field), "RulePatchIn.{field}");
        }
        assert!(nullable("RecoverIn", "until") && !nullable("RecoverIn", "since"));
    }

    /// Every route in `router` (read from its source) is in the document,
    /// but the page, the document itself and the health check.
    #[test]
    fn every_api_route_is_described() {
        let source = include_str!("lib.rs");
        let routes: BTreeSet<String> = source
            .split(".route(")
            .skip(1)
            .filter_map(|piece| piece.trim_start().strip_prefix('"')?.split('"').next())
            .filter(|path| path.starts_with("/v1/"))
            .map(str::to_owned)
            .collect();
        let described: BTreeSet<String> = keys(&doc()["paths"]);
        assert!(routes.len() >= 10, "read {routes:?}");
        assert_eq!(routes, described);
    }
}
