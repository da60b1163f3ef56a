//! `hookline verify`: checks a captured delivery's Standard Webhooks
//! signature with a webhook key, as a receiver would, and says why not.

use clap::Args;
use hookline_core::WebhookKey;
use hookline_core::ports::Clock;
use hookline_core::signing;
use serde_json::{Value, json};

use crate::remote::{Output, RemoteError, print, read_input};

/// How far a signature's timestamp may be from now, as the Standard
/// Webhooks libraries allow (a replay guard).
const TOLERANCE_SECS: i64 = 5 * 60;

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The request's headers: `Name: value` lines (as `curl -D` saves them)
    /// or a JSON object; a file, or - for standard input.
    #[arg(long)]
    headers: String,
    /// The request's body, byte for byte; a file, or - for standard input.
    #[arg(long)]
    body: String,
    /// The tenant's whsec_ key (repeat it to try each key of a rotation).
    #[arg(
        long = "webhook-key",
        env = "HOOKLINE_WEBHOOK_KEY",
        hide_env_values = true,
        required = true
    )]
    webhook_keys: Vec<String>,
    /// Accept a timestamp of any age (a capture checked later).
    #[arg(long)]
    any_age: bool,
    #[arg(long, value_enum, default_value = "table")]
    output: Output,
}

pub fn run(args: VerifyArgs) -> Result<(), RemoteError> {
    if args.headers == "-" && args.body == "-" {
        return Err(RemoteError::Input(
            "--headers and --body cannot both come from standard input".into(),
        ));
    }
    let keys = args
        .webhook_keys
        .iter()
        .map(|k| {
            WebhookKey::parse(k).map_err(|e| RemoteError::Input(format!("--webhook-key: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let headers = parse_headers(&read_input(&args.headers)?)?;
    let body = read_input(&args.body)?;
    let header = |name: &'static str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| RemoteError::Input(format!("the headers have no {name}")))
    };
    let id = header("webhook-id")?;
    let timestamp: i64 = header("webhook-timestamp")?
        .parse()
        .map_err(|_| RemoteError::Input("webhook-timestamp is not a number of seconds".into()))?;
    let signatures = header("webhook-signature")?;
    let Some(key_index) = signing::verify(&keys, id, timestamp, signatures, &body) else {
        return Err(RemoteError::Input(format!(
            "the signature does not match: not signed with {} over this body \
             (was the body changed, e.g. re-encoded or reformatted?)",
            if keys.len() == 1 {
                "this key"
            } else {
                "any of these keys"
            }
        )));
    };
    let age = crate::SystemClock.now().as_secs() - timestamp;
    if !args.any_age && age.abs() > TOLERANCE_SECS {
        return Err(RemoteError::Input(format!(
            "the signature matches, but it was made {age} s ago, more than {TOLERANCE_SECS} s: \
             a receiver refuses it as a replay (--any-age accepts it)"
        )));
    }
    let result = json!({
        "verified": true,
        "webhook_id": id,
        "timestamp": timestamp,
        "key": key_index + 1,
    });
    print(args.output, &result, |_| {
        format!(
            "verified: webhook-id {id}, signed {age} s ago with key {}\n",
            key_index + 1
        )
    });
    Ok(())
}

fn parse_headers(raw: &[u8]) -> Result<Vec<(String, String)>, RemoteError> {
    let text = std::str::from_utf8(raw)
        .map_err(|_| RemoteError::Input("the headers are not UTF-8 text".into()))?;
    if text.trim_start().starts_with('{') {
        let object: serde_json::Map<String, Value> = serde_json::from_str(text)
            .map_err(|e| RemoteError::Input(format!("the headers are not a JSON object: {e}")))?;
        return Ok(object
            .into_iter()
            .map(|(k, v)| {
                (
                    k,
                    v.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| v.to_string()),
                )
            })
            .collect());
    }
    // `Name: value` lines; a status line (`HTTP/1.1 200`, `POST /hook ...`) is skipped.
    Ok(text
        .lines()
        .filter_map(|line| line.split_once(':'))
        .filter(|(name, _)| !name.contains(' '))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect())
}
