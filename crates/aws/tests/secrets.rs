//! Secrets on AWS (moto): webhook keys sealed under KMS data keys bound to
//! their tenant, keys stored in clear refused unless migrating (then sealed
//! when first read), ingest tokens from Secrets Manager.

use hookline_core::id::TenantId;
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
        id: TenantId::stored("a"),
        api_key_hash: "h".into(),
        webhook_key: key.clone(),
        created_at: hookline_conformance::now(),
    })
    .await
    .unwrap();
    let rotated = WebhookKey::from_bytes(&[6; 32]).unwrap();
    let t = hookline_conformance::now();
    b.rotate_webhook_key(
        &TenantId::stored("a"),
        rotated.clone(),
        t,
        t.saturating_add(std::time::Duration::from_secs(60)),
    )
    .await
    .unwrap();
    for stored in stored_keys(&env).await {
        assert!(stored.starts_with("kms2:"), "{stored}");
        assert!(!stored.contains(&secret[6..]));
    }
    assert_eq!(
        b.calls().snapshot().kms,
        2,
        "a data key for each key sealed"
    );

    // Another process opens them with one Decrypt for each data key.
    let other = support::backend(&env).await;
    let keys = other
        .signing_keys(&TenantId::stored("a"), t)
        .await
        .unwrap()
        .0;
    assert_eq!(keys, vec![rotated.clone(), key.clone()]);
    assert_eq!(other.calls().snapshot().kms, 2);

    // A data key is bound to its tenant: tenant a's key, copied to tenant b,
    // does not open as b's (KMS refuses the other encryption context).
    let config = support::sdk_config(&env).await;
    let ddb = aws_sdk_dynamodb::Client::new(&config);
    b.create_tenant(NewTenant {
        id: TenantId::stored("b"),
        api_key_hash: "hb".into(),
        webhook_key: WebhookKey::from_bytes(&[8; 32]).unwrap(),
        created_at: t,
    })
    .await
    .unwrap();
    let a_key = key_items(&env).await[0].clone();
    let mut copied = a_key.clone();
    copied.insert("pk".into(), AttributeValue::S("T#b".into()));
    ddb.put_item()
        .table_name(&env["HOOKLINE_TABLE"])
        .set_item(Some(copied))
        .send()
        .await
        .unwrap();
    let fresh = support::backend(&env).await;
    let refused = fresh
        .signing_keys(&TenantId::stored("b"), t)
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        Some("InvalidCiphertextException"),
        "{refused}"
    );
    ddb.delete_item()
        .table_name(&env["HOOKLINE_TABLE"])
        .key("pk", AttributeValue::S("T#b".into()))
        .key("sk", a_key["sk"].clone())
        .send()
        .await
        .unwrap();

    // As an earlier Hookline left it: a key in clear. Refused, unless the
    // table is being migrated; then read, it is sealed.
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
    let strict = support::backend(&env).await;
    let refused = strict
        .signing_keys(&TenantId::stored("a"), t)
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("HOOKLINE_ACCEPT_PLAIN_KEYS"),
        "{refused}"
    );
    let migrating = hookline_aws::AwsBackend::new(
        &config,
        hookline_aws::AwsSettings {
            accept_plain_keys: true,
            ..strict.settings().clone()
        },
    );
    assert_eq!(
        migrating
            .signing_keys(&TenantId::stored("a"), t)
            .await
            .unwrap()
            .0
            .len(),
        2
    );
    assert!(
        stored_keys(&env)
            .await
            .iter()
            .all(|k| k.starts_with("kms2:")),
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
