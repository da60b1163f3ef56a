//! The operator's commands that speak to a running Hookline over its HTTP
//! API (`hookline rules|deliveries|recover|send`): one client, one error
//! type, and tables for people or JSON for scripts.

pub mod deliveries;
pub mod rules;
pub mod send;

use clap::{Args, ValueEnum};
use reqwest::Method;
use serde_json::Value;

/// Where the server is and who is asking; every remote command takes these,
/// before or after its subcommand. The server is `--server`, never `--url`:
/// that is a rule's webhook URL, as in the API.
#[derive(Debug, Clone, Args)]
pub struct RemoteArgs {
    /// The Hookline server (`hookline serve`, or the stack's ApiUrl).
    #[arg(
        long,
        global = true,
        env = "HOOKLINE_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    pub server: String,
    /// The tenant API key (hk_...).
    #[arg(long, global = true, env = "HOOKLINE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Tables for people, or the API's JSON for scripts.
    #[arg(long, global = true, value_enum, default_value = "table")]
    pub output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The API's own error, in its words.
    #[error("{message} (HTTP {status})")]
    Api { status: u16, message: String },
    #[error("cannot reach Hookline at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{0} is required (or set {1})")]
    Missing(&'static str, &'static str),
    #[error(
        "{url} did not answer as Hookline (no hookline-version header); check --server or HOOKLINE_SERVER"
    )]
    NotHookline { url: String },
    #[error("{0}")]
    Input(String),
}

/// A running Hookline's HTTP API.
pub struct Client {
    http: reqwest::Client,
    base: String,
    bearer: String,
}

impl Client {
    /// A client that authenticates with the tenant API key.
    pub fn admin(args: &RemoteArgs) -> Result<Client, RemoteError> {
        let key = args
            .api_key
            .clone()
            .ok_or(RemoteError::Missing("--api-key", "HOOKLINE_API_KEY"))?;
        Ok(Self::new(&args.server, key))
    }

    pub fn new(base: &str, bearer: String) -> Client {
        Client {
            http: reqwest::Client::new(),
            base: base.trim_end_matches('/').to_owned(),
            bearer,
        }
    }

    /// The answer's JSON (null for an empty answer), or the API's error.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, RemoteError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url).bearer_auth(&self.bearer);
        if let Some(body) = body {
            request = request.json(body);
        }
        let connect = |source| RemoteError::Connect {
            url: self.base.clone(),
            source,
        };
        let response = request.send().await.map_err(connect)?;
        // Whatever answered without Hookline's header is not trusted with a
        // "done", whatever its status.
        if !response
            .headers()
            .contains_key(hookline_api::VERSION_HEADER)
        {
            return Err(RemoteError::NotHookline {
                url: self.base.clone(),
            });
        }
        let status = response.status();
        let text = response.text().await.map_err(connect)?;
        let json: Option<Value> = serde_json::from_str(&text).ok();
        if status.is_success() {
            return Ok(json.unwrap_or(Value::Null));
        }
        let message = json
            .as_ref()
            .and_then(|j| j["error"]["message"].as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| {
                let text = text.trim();
                if text.is_empty() {
                    status.canonical_reason().unwrap_or("error").to_owned()
                } else {
                    text.chars().take(200).collect()
                }
            });
        Err(RemoteError::Api {
            status: status.as_u16(),
            message,
        })
    }

    pub async fn get(&self, path: &str) -> Result<Value, RemoteError> {
        self.call(Method::GET, path, None).await
    }
}

/// `?a=1&b=2` from the pairs that have a value, each value escaped.
pub fn query(pairs: &[(&str, Option<String>)]) -> String {
    let mut url = reqwest::Url::parse("http://x/").expect("a constant URL parses");
    for (k, v) in pairs {
        if let Some(v) = v {
            url.query_pairs_mut().append_pair(k, v);
        }
    }
    url.query().map(|q| format!("?{q}")).unwrap_or_default()
}

/// A path segment, escaped (ids come from the user).
pub fn segment(id: &str) -> String {
    let mut url = reqwest::Url::parse("http://x/").expect("a constant URL parses");
    url.path_segments_mut()
        .expect("an http URL has path segments")
        .push(id);
    url.path().trim_start_matches('/').to_owned()
}

/// Prints `value` as JSON, or as people read it.
pub fn print(output: Output, value: &Value, for_people: impl FnOnce(&Value) -> String) {
    match output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
        ),
        Output::Table => print!("{}", printable(&for_people(value))),
    }
}

/// `text` with every control character but line breaks and tabs written as
/// an escape (`\u{1b}`): rule names, receivers' answers and errors come from
/// outside, and raw they could retitle, clear or repaint the terminal.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() && c != '\n' && c != '\t' {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// Columns padded to their widest cell, a header line first.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        s.trim_end().to_owned() + "\n"
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// A JSON field as a table cell: strings bare, null as `-`.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Reads a file, or standard input for `-`.
pub fn read_input(path: &str) -> Result<Vec<u8>, RemoteError> {
    use std::io::Read;
    if path == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| RemoteError::Input(format!("cannot read standard input: {e}")))?;
        Ok(buf)
    } else {
        std::fs::read(path).map_err(|e| RemoteError::Input(format!("cannot read {path}: {e}")))
    }
}

/// Reads JSON from a file or standard input, naming where it is wrong.
pub fn read_json(path: &str) -> Result<Value, RemoteError> {
    let bytes = read_input(path)?;
    serde_json::from_slice(&bytes)
        .map_err(|e| RemoteError::Input(format!("{path} is not JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_queries_escape() {
        let t = table(
            &["ID", "NAME"],
            &[
                vec!["rul_1".into(), "paid".into()],
                vec!["r".into(), "x y".into()],
            ],
        );
        assert_eq!(t, "ID     NAME\nrul_1  paid\nr      x y\n");
        assert_eq!(
            query(&[("a", Some("x y&z".into())), ("b", None)]),
            "?a=x+y%26z"
        );
        assert_eq!(query(&[("b", None)]), "");
        assert_eq!(segment("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn control_characters_are_shown_not_obeyed() {
        assert_eq!(
            printable("\u{1b}]0;pwned\u{7}\u{1b}[31mRED\r\nok\tdone"),
            "\\u{1b}]0;pwned\\u{7}\\u{1b}[31mRED\\u{d}\nok\tdone"
        );
    }
}
