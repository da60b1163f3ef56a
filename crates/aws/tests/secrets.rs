//! Secrets on AWS (moto): webhook keys sealed under KMS data keys in the
//! table, keys stored in clear sealed when first read, ingest tokens from
//! Secrets Manager.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use hookline_core::WebhookKey;
use hookline_core::ports::{NewTenant, Store};
use hookline_test_support as support;

/// Tenant `a`'s webhook key items as stored.
async fn key_items(env: &HashMap<String, String>) -> Vec<HashMap<String, AttributeValue>> {
    let config = support::sdk_config(env).await;
    aws_sdk_dynamodb::Client::new(&config)
        .query()
        .table_name(&env["HOOKLINE_TABLE"])
        .key_condition_expression("pk = :pk AND begins_with(sk, :k)")
        .expression_attribute_values(":pk", AttributeValue::S("T#a".into()))
        .expression_attribute_values(":k", AttributeValue::S("KEY#".into()))
        .send()
        .await
        .unwrap()
        .items
        .unwrap_or_default()
}

async fn stored_keys(env: &HashMap<String, String>) -> Vec<String> {
    key_items(env)
        .await
        .iter()
        .map(|i| i["key"].as_s().unwrap().clone())
        .collect()
}

#[tokio::test]
async fn webhook_keys_are_sealed_under_kms_and_clear_ones_sealed_on_read() {
    let env = support::create_resources(3, 30);
    let b = support::backend(&env).await;
    let key = WebhookKey::from_bytes(&[4; 32]).unwrap();
    let secret = key.expose();
    b.create_tenant(NewTenant {
        id: "a".into(),
        api_key_hash: "h".into(),
        webhook_key: key.clone(),
        created_at: hookline_conformance::now(),
    })
    .await
    .unwrap();
    let rotated = WebhookKey::from_bytes(&[6; 32]).unwrap();
    let t = hookline_conformance::now();
    b.rotate_webhook_key(
        "a",
        rotated.clone(),
        t,
        t.saturating_add(std::time::Duration::from_secs(60)),
    )
    .await
    .unwrap();
    for stored in stored_keys(&env).await {
        assert!(stored.starts_with("kms1:"), "{stored}");
        assert!(!stored.contains(&secret[6..]));
    }
    assert_eq!(b.calls().snapshot().kms, 1, "one data key for this process");

    // Another process opens them with one Decrypt for the data key.
    let other = support::backend(&env).await;
    let keys = other.signing_keys("a", t).await.unwrap().0;
    assert_eq!(keys, vec![rotated.clone(), key.clone()]);
    assert_eq!(other.calls().snapshot().kms, 1);

    // As an earlier Hookline left it: a key in clear. Read, it is sealed.
    let config = support::sdk_config(&env).await;
    let ddb = aws_sdk_dynamodb::Client::new(&config);
    let items = key_items(&env).await;
    let first = &items[0];
    ddb.update_item()
        .table_name(&env["HOOKLINE_TABLE"])
        .key("pk", first["pk"].clone())
        .key("sk", first["sk"].clone())
        .update_expression("SET #k = :plain")
        .expression_attribute_names("#k", "key")
        .expression_attribute_values(":plain", AttributeValue::S(secret.clone()))
        .send()
        .await
        .unwrap();
    assert!(stored_keys(&env).await.contains(&secret));
    assert_eq!(other.signing_keys("a", t).await.unwrap().0.len(), 2);
    assert!(
        stored_keys(&env)
            .await
            .iter()
            .all(|k| k.starts_with("kms1:")),
        "sealed when first read"
    );
}

#[tokio::test]
async fn ingest_tokens_come_from_secrets_manager() {
    let env = support::create_resources(3, 30);
    let config = support::sdk_config(&env).await;
    let tokens = hookline_aws::ingest_tokens(&config, &env["HOOKLINE_INGEST_TOKEN_SECRET"])
        .await
        .unwrap();
    let current = tokens.current().unwrap().to_owned();
    assert!(current.len() >= 32);
    assert!(tokens.accepts(&current));
    let missing = hookline_aws::ingest_tokens(&config, "no-such-secret")
        .await
        .unwrap_err();
    assert_eq!(
        missing.code(),
        Some("ResourceNotFoundException"),
        "{missing}"
    );
}
