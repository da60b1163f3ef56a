//! `hookline rules list|show|health|create|update|delete`.

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::{Client, RemoteArgs, RemoteError, cell, print, read_json, segment, table};

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Every rule of the tenant.
    List,
    /// One rule.
    Show { id: String },
    /// How a rule's receiver is doing: success rate and latency over the
    /// last hour and day, the last success and failure, its circuit.
    Health { id: String },
    /// A new rule, from flags or from a JSON body (--from).
    Create {
        #[command(flatten)]
        fields: RuleFields,
    },
    /// Change some of a rule's fields.
    Update {
        id: String,
        #[command(flatten)]
        fields: RuleFields,
    },
    /// Delete a rule; its pending deliveries end dead.
    Delete { id: String },
}

/// The trigger names, as the core spells them, for `--trigger`.
fn trigger_names() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(hookline_core::trigger::trigger_names(|_| true))
}

/// A rule's fields as flags; the server checks them and names what is wrong.
#[derive(Debug, Args)]
pub struct RuleFields {
    /// The rule as JSON, from a file or - for standard input; flags given
    /// beside it override its fields.
    #[arg(long)]
    from: Option<String>,
    #[arg(long)]
    name: Option<String>,
    /// What the rule subscribes to.
    #[arg(long, value_parser = trigger_names())]
    trigger: Option<String>,
    /// The rule's webhook URL: where deliveries go (http or https).
    #[arg(long, alias = "webhook-url")]
    url: Option<String>,
    /// universal, or product:ID, payment_page:ID, upsell:ID.
    #[arg(long)]
    scope: Option<String>,
    #[arg(long)]
    per_order_line: Option<bool>,
    #[arg(long)]
    first_payment_only: Option<bool>,
    #[arg(long)]
    enabled: Option<bool>,
    /// full or thin.
    #[arg(long)]
    payload: Option<String>,
    /// A payload filter as JSON, e.g. '{"data": {"amount": {"$gte": 1000}}}'.
    #[arg(long)]
    filter: Option<String>,
    /// A header added to every delivery, as 'Name: value' (repeat it).
    #[arg(long = "header")]
    headers: Vec<String>,
    /// At most this many deliveries a second.
    #[arg(long)]
    rate_limit: Option<u32>,
}

impl RuleFields {
    fn body(&self) -> Result<Value, RemoteError> {
        let mut body = match &self.from {
            Some(path) => match read_json(path)? {
                Value::Object(map) => map,
                _ => {
                    return Err(RemoteError::Input(format!(
                        "{path}: a rule is a JSON object"
                    )));
                }
            },
            None => Map::new(),
        };
        let mut set = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                body.insert(k.to_owned(), v);
            }
        };
        set("name", self.name.clone().map(Value::from));
        set("trigger", self.trigger.clone().map(Value::from));
        set("url", self.url.clone().map(Value::from));
        set("scope", self.scope.as_deref().map(scope).transpose()?);
        set("per_order_line", self.per_order_line.map(Value::from));
        set(
            "first_payment_only",
            self.first_payment_only.map(Value::from),
        );
        set("enabled", self.enabled.map(Value::from));
        set("payload", self.payload.clone().map(Value::from));
        set(
            "filter",
            self.filter
                .as_deref()
                .map(|f| {
                    serde_json::from_str(f)
                        .map_err(|e| RemoteError::Input(format!("--filter is not JSON: {e}")))
                })
                .transpose()?,
        );
        if !self.headers.is_empty() {
            let mut headers = Map::new();
            for h in &self.headers {
                let (name, value) = h.split_once(':').ok_or_else(|| {
                    RemoteError::Input(format!("--header {h:?}: write it as 'Name: value'"))
                })?;
                headers.insert(name.trim().to_owned(), Value::from(value.trim()));
            }
            set("headers", Some(Value::Object(headers)));
        }
        set("rate_limit", self.rate_limit.map(Value::from));
        Ok(Value::Object(body))
    }
}

fn scope(s: &str) -> Result<Value, RemoteError> {
    if s == "universal" {
        return Ok(json!({"type": "universal"}));
    }
    match s.split_once(':') {
        Some((kind @ ("product" | "payment_page" | "upsell"), id)) if !id.is_empty() => {
            Ok(json!({"type": kind, "id": id}))
        }
        _ => Err(RemoteError::Input(format!(
            "--scope {s:?}: write universal, product:ID, payment_page:ID or upsell:ID"
        ))),
    }
}

pub async fn run(remote: RemoteArgs, command: RulesCommand) -> Result<(), RemoteError> {
    let client = Client::admin(&remote)?;
    match command {
        RulesCommand::List => {
            let mut rules = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let q = super::query(&[("limit", Some("250".into())), ("cursor", cursor)]);
                let page = client.get(&format!("/v1/rules{q}")).await?;
                rules.extend(page["data"].as_array().cloned().unwrap_or_default());
                match page["next_cursor"].as_str() {
                    Some(next) => cursor = Some(next.to_owned()),
                    None => break,
                }
            }
            print(remote.output, &Value::Array(rules), list);
        }
        RulesCommand::Show { id } => {
            let rule = client.get(&format!("/v1/rules/{}", segment(&id))).await?;
            print(remote.output, &rule, show);
        }
        RulesCommand::Health { id } => {
            let health = client
                .get(&format!("/v1/rules/{}/health", segment(&id)))
                .await?;
            print(remote.output, &health, health_text);
        }
        RulesCommand::Create { fields } => {
            let body = fields.body()?;
            if !body.get("url").is_some_and(Value::is_string) {
                return Err(RemoteError::Input(
                    "--url is required: the rule's webhook URL, where its deliveries go".into(),
                ));
            }
            let rule = client.call(Method::POST, "/v1/rules", Some(&body)).await?;
            print(remote.output, &rule, show);
        }
        RulesCommand::Update { id, fields } => {
            let rule = client
                .call(
                    Method::PATCH,
                    &format!("/v1/rules/{}", segment(&id)),
                    Some(&fields.body()?),
                )
                .await?;
            print(remote.output, &rule, show);
        }
        RulesCommand::Delete { id } => {
            client
                .call(Method::DELETE, &format!("/v1/rules/{}", segment(&id)), None)
                .await?;
            print(remote.output, &json!({"deleted": id}), |_| {
                format!("deleted {id}\n")
            });
        }
    }
    Ok(())
}

fn scope_text(scope: &Value) -> String {
    match (scope["type"].as_str(), scope["id"].as_str()) {
        (Some(kind), Some(id)) => format!("{kind}:{id}"),
        (Some(kind), None) => kind.to_owned(),
        _ => cell(scope),
    }
}

fn list(rules: &Value) -> String {
    let rows: Vec<Vec<String>> = rules
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            vec![
                cell(&r["id"]),
                cell(&r["name"]),
                cell(&r["trigger"]),
                scope_text(&r["scope"]),
                if r["enabled"] == true { "yes" } else { "no" }.to_owned(),
                cell(&r["url"]),
            ]
        })
        .collect();
    table(&["ID", "NAME", "TRIGGER", "SCOPE", "ENABLED", "URL"], &rows)
}

fn show(rule: &Value) -> String {
    let mut rows = Vec::new();
    for (k, v) in rule.as_object().into_iter().flatten() {
        let text = match k.as_str() {
            "scope" => scope_text(v),
            _ if v.is_object() || v.is_array() => v.to_string(),
            _ => cell(v),
        };
        rows.push(vec![k.clone(), text]);
    }
    table(&["FIELD", "VALUE"], &rows)
}

/// A rule's health as a person reads it: a line per figure, the two
/// windows side by side.
fn health_text(h: &Value) -> String {
    let rate = |w: &Value| match w["success_rate"].as_f64() {
        Some(r) => format!("{:.1}%", r * 100.0),
        None => "-".into(),
    };
    let ms = |v: &Value| v.as_u64().map_or("-".into(), |ms| format!("{ms} ms"));
    let window = |name: &str, w: &Value| {
        vec![
            name.to_owned(),
            rate(w),
            format!("{} ({} failed)", cell(&w["attempts"]), cell(&w["failures"])),
            ms(&w["latency_p50_ms"]),
            ms(&w["latency_p99_ms"]),
        ]
    };
    let mut text = table(
        &["WINDOW", "SUCCESS", "ATTEMPTS", "P50", "P99"],
        &[
            window("last hour", &h["last_hour"]),
            window("last day", &h["last_day"]),
        ],
    );
    let failure = &h["last_failure"];
    let rows = [
        ("circuit", cell(&h["circuit"])),
        ("open until", cell(&h["circuit_open_until"])),
        ("consecutive failures", cell(&h["consecutive_failures"])),
        ("last success", cell(&h["last_success_at"])),
        ("last failure", cell(&failure["at"])),
        ("last error", cell(&failure["error"])),
        ("concurrency", cell(&h["concurrency"])),
    ];
    text.push('\n');
    text.push_str(&table(
        &["FIGURE", "VALUE"],
        &rows.map(|(k, v)| vec![k.to_owned(), v]),
    ));
    text
}
