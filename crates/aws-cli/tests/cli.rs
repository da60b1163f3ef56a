//! `hookline-aws` on moto's server.

use hookline_core::api_key::hash_api_key;
use hookline_core::ports::Store;
use serde_json::Value;

use hookline_test_support as aws_support;

const BIN: &str = env!("CARGO_BIN_EXE_hookline-aws");

#[tokio::test]
async fn tenant_create_dlq_redrive_and_migrate_run_on_aws() {
    let env = aws_support::create_resources(8, 30);
    let run = |args: &[&str]| {
        let out = std::process::Command::new(BIN)
            .args(args)
            .envs(&env)
            .env("HOOKLINE_LOG", "warn")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let created = run(&["tenant", "create", "shop_aws"]);
    let backend = aws_support::backend(&env).await;
    let api_key = created["api_key"].as_str().unwrap();
    assert_eq!(
        backend
            .tenant_for_api_key(&hash_api_key(api_key))
            .await
            .unwrap()
            .as_deref(),
        Some("shop_aws")
    );
    let keys = backend
        .signing_keys(
            &hookline_core::TenantId::stored("shop_aws"),
            hookline_conformance::now(),
        )
        .await
        .unwrap();
    assert_eq!(keys.0[0].expose(), created["webhook_key"].as_str().unwrap());

    assert_eq!(
        run(&["dlq", "redrive"]),
        serde_json::json!({"queue": "deliveries", "redriven": 0})
    );

    assert_eq!(
        run(&["migrate"]),
        serde_json::json!({"deliveries": 0, "rules": 0})
    );

    let missing = std::process::Command::new(BIN)
        .args(["dlq", "redrive"])
        .env_clear()
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("HOOKLINE_TABLE is not set"));
}
