//! What `hookline serve` shows besides the JSON API: its OpenAPI document
//! and the dashboard's files, both without an API key.

use crate::support::*;

#[tokio::test]
async fn the_served_openapi_document_is_the_committed_one() {
    let dir = tempfile::tempdir().unwrap();
    let h = Hookline::start(&db_in(&dir), &[]);
    let resp = reqwest::get(format!("{}/openapi.json", h.base))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let served = resp.text().await.unwrap();
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/openapi.json"
    ))
    .unwrap();
    assert!(
        served == committed,
        "GET /openapi.json differs from docs/openapi.json; write it with \
         HOOKLINE_WRITE_OPENAPI=1 cargo test -p hookline-api openapi"
    );
    let doc: serde_json::Value = serde_json::from_str(&served).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
    assert!(schemes.contains_key("api_key") && schemes.contains_key("ingest_token"));
}

#[tokio::test]
async fn the_dashboard_files_are_served_with_a_strict_policy() {
    let dir = tempfile::tempdir().unwrap();
    let h = Hookline::start(&db_in(&dir), &[]);
    for (path, kind) in [
        ("/dashboard", "text/html"),
        ("/dashboard/app.js", "text/javascript"),
        ("/dashboard/app.css", "text/css"),
    ] {
        let resp = reqwest::get(format!("{}{path}", h.base)).await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let headers = resp.headers();
        assert!(
            headers["content-type"].to_str().unwrap().starts_with(kind),
            "{path}"
        );
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'") && csp.contains("connect-src 'self'"),
            "{csp}"
        );
        assert_eq!(headers["x-frame-options"], "DENY");
    }
    // `..` reaches the handler encoded (a client normalises it otherwise):
    // only the three files are served.
    let (status, body) = h
        .request("GET", "/dashboard/..%2Fv1%2Frules", None, None)
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let (status, body) = h.request("GET", "/dashboard/secret.txt", None, None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
}
