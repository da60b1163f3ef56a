//! What each fuzz target does with its input: arbitrary bytes, from outside,
//! that must never panic. Shared by the cargo fuzz targets and by
//! `crates/api/tests/fuzz_corpus.rs`, which replays the committed corpus
//! through the same functions on the stable toolchain.

use hookline_api::{RuleIn, RulePatchIn};
use hookline_core::Event;
use hookline_core::ports::{key_cursor, parse_key_cursor, parse_row_cursor};
use hookline_core::signing::{self, WebhookKey};
use hookline_core::target::TargetPolicy;

/// What a target does with one input.
pub type Target = fn(&[u8]);

/// The targets by name, as their corpus folders are named.
pub const TARGETS: &[(&str, Target)] = &[
    ("ingest_body", ingest_body),
    ("rule_body", rule_body),
    ("target_url", target_url),
    ("signature", signature),
    ("cursor", cursor),
];

/// `POST /v1/events`'s body (and each event of a batch).
pub fn ingest_body(data: &[u8]) {
    if let Ok(event) = Event::from_json(data) {
        // What was accepted serializes and reads back the same.
        let again = serde_json::to_vec(&event).expect("an accepted event serializes");
        let back = Event::from_json(&again).expect("a serialized event reads back");
        assert_eq!(back.id, event.id);
        assert_eq!(back.lines, event.lines);
    }
}

/// `POST` and `PATCH /v1/rules` bodies, filters included, under both URL
/// policies.
pub fn rule_body(data: &[u8]) {
    for allow_private in [false, true] {
        let policy = TargetPolicy { allow_private };
        let _ = RuleIn::parse(data, &policy);
        let _ = RulePatchIn::parse(data, &policy);
    }
}

/// A rule's URL through the SSRF policy: what it accepts is http(s), has no
/// credentials, and reads back as itself.
pub fn target_url(data: &[u8]) {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    for allow_private in [false, true] {
        if let Ok(url) = (TargetPolicy { allow_private }).check_url(raw) {
            assert!(matches!(url.scheme(), "http" | "https"), "{url}");
            assert!(
                url.username().is_empty() && url.password().is_none(),
                "{url}"
            );
            let again = (TargetPolicy { allow_private }).check_url(url.as_str());
            assert!(again.is_ok(), "{url} was accepted once, then refused");
        }
    }
}

/// A captured delivery checked against a key: the first line a `whsec_`
/// key, the second `id timestamp signatures...`, the rest the body. A
/// signature Hookline made must verify; a changed body must not.
pub fn signature(data: &[u8]) {
    let mut parts = data.splitn(3, |b| *b == b'\n');
    let (Some(key), Some(meta), body) = (parts.next(), parts.next(), parts.next()) else {
        return;
    };
    let body = body.unwrap_or_default();
    let Ok(key) = WebhookKey::parse(&String::from_utf8_lossy(key)) else {
        return;
    };
    let meta = String::from_utf8_lossy(meta);
    let mut fields = meta.splitn(3, ' ');
    let id = fields.next().unwrap_or_default();
    let timestamp: i64 = fields.next().and_then(|t| t.parse().ok()).unwrap_or(0);
    let given = fields.next().unwrap_or_default();
    let keys = [key];
    let _ = signing::verify(&keys, id, timestamp, given, body);
    let made = keys[0].sign(id, timestamp, body);
    assert_eq!(signing::verify(&keys, id, timestamp, &made, body), Some(0));
    let mut changed = body.to_vec();
    changed.push(b'.');
    assert_eq!(signing::verify(&keys, id, timestamp, &made, &changed), None);
}

/// A page cursor from a client: both forms; a key cursor reads back its parts.
pub fn cursor(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_row_cursor(text);
    if let Ok(parts) = parse_key_cursor(text) {
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        assert_eq!(
            parse_key_cursor(&key_cursor(&refs)).ok(),
            Some(parts.clone())
        );
    }
}
