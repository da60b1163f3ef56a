//! `hookline send`: post events as the platform does, with the ingest token.

use clap::Args;
use reqwest::Method;
use serde_json::{Value, json};

use super::{Client, Output, RemoteError, cell, print, read_json, table};

#[derive(Debug, Args)]
pub struct SendArgs {
    /// The event as JSON, from a file or - for standard input. A JSON array
    /// (or {"events": [...]}) goes to the batch route, 1 to 100 events.
    #[arg(default_value = "-")]
    file: String,
    /// The Hookline server.
    #[arg(long, env = "HOOKLINE_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// The platform's ingest token.
    #[arg(long, env = "HOOKLINE_INGEST_TOKEN", hide_env_values = true)]
    ingest_token: Option<String>,
    /// Tables for people, or the API's JSON for scripts.
    #[arg(long, value_enum, default_value = "table")]
    output: Output,
}

pub async fn run(args: SendArgs) -> Result<(), RemoteError> {
    let token = args.ingest_token.clone().ok_or(RemoteError::Missing(
        "--ingest-token",
        "HOOKLINE_INGEST_TOKEN",
    ))?;
    let client = Client::new(&args.server, token);
    let (path, body) = match read_json(&args.file)? {
        Value::Array(events) => ("/v1/events/batch", json!({ "events": events })),
        batch @ Value::Object(_) if batch.get("events").is_some() => ("/v1/events/batch", batch),
        event => ("/v1/events", event),
    };
    let answer = client.call(Method::POST, path, Some(&body)).await?;
    print(args.output, &answer, |a| match a["results"].as_array() {
        Some(results) => {
            let rows: Vec<Vec<String>> = results
                .iter()
                .map(|r| vec![cell(&r["id"]), cell(&r["status"]), outcome(r)])
                .collect();
            table(&["EVENT", "STATUS", "OUTCOME"], &rows)
        }
        None => format!("{} {}\n", cell(&a["id"]), outcome(a)),
    });
    Ok(())
}

fn outcome(r: &Value) -> String {
    if let Some(message) = r["error"]["message"].as_str() {
        message.to_owned()
    } else if r["duplicate"] == true {
        "duplicate (sent before; delivered once)".into()
    } else {
        "accepted".into()
    }
}
