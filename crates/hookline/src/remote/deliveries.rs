//! `hookline deliveries list|show|retry` and `hookline recover`.

use std::time::Duration;

use clap::{Args, Subcommand};
use hookline_core::Timestamp;
use hookline_core::ports::Clock;
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::Method;
use serde_json::{Value, json};

use super::{Client, RemoteArgs, RemoteError, cell, print, query, segment, table};

#[derive(Debug, Subcommand)]
pub enum DeliveriesCommand {
    /// The delivery log, newest first.
    List {
        /// Only this rule's deliveries.
        #[arg(long)]
        rule: Option<String>,
        /// Only this event's deliveries.
        #[arg(long)]
        event: Option<String>,
        /// pending, succeeded or dead.
        #[arg(long)]
        status: Option<String>,
        /// How many (1 to 250).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Where the page before ended (its next cursor).
        #[arg(long)]
        cursor: Option<String>,
    },
    /// One delivery and its attempts.
    Show { id: String },
    /// Queue a delivery again now, with a fresh set of retries.
    Retry { id: String },
}

pub async fn run(remote: RemoteArgs, command: DeliveriesCommand) -> Result<(), RemoteError> {
    let client = Client::admin(&remote)?;
    match command {
        DeliveriesCommand::List {
            rule,
            event,
            status,
            limit,
            cursor,
        } => {
            let q = query(&[
                ("rule_id", rule),
                ("event_id", event),
                ("status", status),
                ("limit", Some(limit.to_string())),
                ("cursor", cursor),
            ]);
            let page = client.get(&format!("/v1/deliveries{q}")).await?;
            print(remote.output, &page, list);
        }
        DeliveriesCommand::Show { id } => {
            let delivery = client
                .get(&format!("/v1/deliveries/{}", segment(&id)))
                .await?;
            print(remote.output, &delivery, show);
        }
        DeliveriesCommand::Retry { id } => {
            let delivery = client
                .call(
                    Method::POST,
                    &format!("/v1/deliveries/{}/retry", segment(&id)),
                    None,
                )
                .await?;
            print(remote.output, &delivery, |d| {
                format!("queued {} again ({})\n", cell(&d["id"]), cell(&d["status"]))
            });
        }
    }
    Ok(())
}

fn list(page: &Value) -> String {
    let rows: Vec<Vec<String>> = page["data"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            vec![
                cell(&d["id"]),
                cell(&d["event_id"]),
                cell(&d["rule_id"]),
                cell(&d["status"]),
                cell(&d["attempt_count"]),
                cell(&d["created_at"]),
            ]
        })
        .collect();
    let mut out = table(
        &["ID", "EVENT", "RULE", "STATUS", "ATTEMPTS", "CREATED"],
        &rows,
    );
    if let Some(next) = page["next_cursor"].as_str() {
        out.push_str(&format!("more: --cursor {next}\n"));
    }
    out
}

fn show(d: &Value) -> String {
    let mut rows: Vec<Vec<String>> = [
        "id",
        "event_id",
        "rule_id",
        "line_id",
        "status",
        "created_at",
        "attempt_count",
    ]
    .iter()
    .filter(|k| !d[**k].is_null())
    .map(|k| vec![(*k).to_owned(), cell(&d[*k])])
    .collect();
    if let Some(w) = d.get("waiting") {
        rows.push(vec![
            "waiting".into(),
            format!("{} until {}", cell(&w["reason"]), cell(&w["until"])),
        ]);
    }
    let mut out = table(&["FIELD", "VALUE"], &rows);
    let attempts: Vec<Vec<String>> = d["attempts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            let body = cell(&a["response_body"]).replace(['\n', '\r'], " ");
            vec![
                cell(&a["at"]),
                cell(&a["status_code"]),
                format!("{} ms", cell(&a["duration_ms"])),
                cell(&a["error"]),
                body.chars().take(60).collect(),
            ]
        })
        .collect();
    out.push('\n');
    out.push_str(&table(
        &["ATTEMPT AT", "STATUS", "TOOK", "ERROR", "RESPONSE"],
        &attempts,
    ));
    out
}

/// `hookline recover RULE --since T [--until T]`.
#[derive(Debug, Args)]
pub struct RecoverArgs {
    /// The rule whose dead deliveries go out again.
    rule: String,
    /// The window's start, RFC 3339 (2026-11-29T00:00:00Z).
    #[arg(long)]
    since: String,
    /// Its end (default now).
    #[arg(long)]
    until: Option<String>,
    /// The window is recovered a slice at a time, each one call, so a long
    /// one shows progress and a failure says how far it got.
    #[arg(long, default_value = "1h", value_parser = hookline_core::settings::duration)]
    step: Duration,
    #[command(flatten)]
    remote: RemoteArgs,
}

fn timestamp(flag: &str, value: &str) -> Result<Timestamp, RemoteError> {
    Timestamp::parse_rfc3339(value).ok_or_else(|| {
        RemoteError::Input(format!(
            "{flag} {value:?}: write an RFC 3339 time such as 2026-11-29T12:00:00Z"
        ))
    })
}

pub async fn recover(args: RecoverArgs) -> Result<(), RemoteError> {
    let client = Client::admin(&args.remote)?;
    let since = timestamp("--since", &args.since)?;
    let until = match &args.until {
        Some(u) => timestamp("--until", u)?,
        None => crate::SystemClock.now(),
    };
    if until < since {
        return Err(RemoteError::Input("--until is before --since".into()));
    }
    let step = (args.step.as_millis() as i64).max(1000);
    let mut slices = Vec::new();
    let mut start = since.as_millis();
    loop {
        let end = (start + step).min(until.as_millis());
        slices.push((start, end));
        if end >= until.as_millis() {
            break;
        }
        start = end;
    }
    let bar = if slices.len() > 1 {
        ProgressBar::new(slices.len() as u64).with_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} slices, {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        )
    } else {
        ProgressBar::hidden()
    };
    let path = format!("/v1/rules/{}/recover", segment(&args.rule));
    let mut recovered = 0u64;
    for (start, end) in slices {
        let body = json!({
            "since": Timestamp::from_millis(start),
            "until": Timestamp::from_millis(end),
        });
        let answer = client
            .call(Method::POST, &path, Some(&body))
            .await
            .map_err(|e| match e {
                RemoteError::Api { status, message } if recovered > 0 => RemoteError::Api {
                    status,
                    message: format!(
                        "{message}; {recovered} recovered before {}",
                        Timestamp::from_millis(start).to_rfc3339()
                    ),
                },
                e => e,
            })?;
        recovered += answer["recovered"].as_u64().unwrap_or(0);
        bar.inc(1);
        bar.set_message(format!("{recovered} recovered"));
    }
    bar.finish_and_clear();
    let result = json!({"rule_id": args.rule, "recovered": recovered});
    print(args.remote.output, &result, |r| {
        format!(
            "recovered {} dead deliveries of {}\n",
            r["recovered"], args.rule
        )
    });
    Ok(())
}
