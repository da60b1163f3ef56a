//! `template.yaml` agrees with the code: each function's binary exists, every
//! variable the functions read is set, the HTTP routes exist in the router,
//! the table is the adapter's, and the queues fit the retry schedule.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hookline_core::RetrySchedule;
use tower::ServiceExt;
use yaml_rust2::{Yaml, YamlLoader};

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

fn template() -> Yaml {
    let text = std::fs::read_to_string(root().join("template.yaml")).unwrap();
    YamlLoader::load_from_str(&text).unwrap().remove(0)
}

fn functions(t: &Yaml) -> Vec<(String, &Yaml)> {
    t["Resources"]
        .as_hash()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some("AWS::Serverless::Function"))
        .map(|(name, r)| (name.as_str().unwrap().to_owned(), r))
        .collect()
}

/// A parameter's default: what `!Ref Name` means before anyone overrides it.
fn default_of<'a>(t: &'a Yaml, reference: &str) -> &'a Yaml {
    &t["Parameters"][reference]["Default"]
}

fn number(y: &Yaml) -> i64 {
    y.as_i64()
        .or_else(|| y.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| panic!("not a number: {y:?}"))
}

#[test]
fn every_function_builds_a_binary_of_this_crate() {
    let t = template();
    let fns = functions(&t);
    assert_eq!(fns.len(), 4);
    for (name, f) in fns {
        assert_eq!(
            f["Metadata"]["BuildMethod"].as_str(),
            Some("rust-cargolambda"),
            "{name}"
        );
        let binary = f["Metadata"]["BuildProperties"]["Binary"].as_str().unwrap();
        assert!(
            root()
                .join(format!("crates/lambda/src/bin/{binary}.rs"))
                .exists(),
            "{name}: no binary {binary}"
        );
    }
}

/// `sam local` needs an x86_64 build and a local endpoint; a deploy with the
/// default parameters must get neither.
#[test]
fn a_deploy_with_default_parameters_is_arm64_on_aws_endpoints() {
    let t = template();
    let function = &t["Globals"]["Function"];
    let architectures = function["Architectures"].as_vec().unwrap();
    assert_eq!(architectures.len(), 1);
    let written = architectures[0].as_str().unwrap();
    let resolved = default_of(&t, written).as_str().unwrap_or(written);
    assert_eq!(resolved, "arm64");
    assert_eq!(
        function["Environment"]["Variables"]["HOOKLINE_AWS_ENDPOINT"].as_str(),
        Some(""),
        "HOOKLINE_AWS_ENDPOINT is declared (so sam local --env-vars may set it) and empty"
    );
}

/// Every `HOOKLINE_*` and `OTEL_*` name in the functions' source, the
/// shared settings parser in the core and the telemetry included.
fn variables_read() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for dir in [
        "crates/lambda/src",
        "crates/lambda/src/bin",
        "crates/aws/src",
        "crates/core/src",
        "crates/telemetry/src",
    ] {
        for entry in std::fs::read_dir(root().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for piece in text.split('"').skip(1).step_by(2) {
                    if (piece.starts_with("HOOKLINE_") || piece.starts_with("OTEL_"))
                        && piece.chars().all(|c| c.is_ascii_uppercase() || c == '_')
                    {
                        names.insert(piece.to_owned());
                    }
                }
            }
        }
    }
    names
}

/// Variables the code reads that a deployment must not set: the ingest
/// token lives in Secrets Manager on AWS (`HOOKLINE_INGEST_TOKEN` is for
/// local runs), so no function's environment may hold it.
const NOT_ON_AWS: &[&str] = &["HOOKLINE_INGEST_TOKEN"];

/// Standard OpenTelemetry variables the code reads that an operator may
/// set beside the template's `OtlpEndpoint` (a collector's credentials
/// have no place in it).
const OPERATORS_OWN: &[&str] = &[
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
];

fn variables_of(env: &Yaml) -> BTreeSet<String> {
    env["Variables"]
        .as_hash()
        .map(|h| h.keys().map(|k| k.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

#[test]
fn every_variable_the_functions_read_is_set() {
    let t = template();
    let mut set = variables_of(&t["Globals"]["Function"]["Environment"]);
    for (_, f) in functions(&t) {
        set.extend(variables_of(&f["Properties"]["Environment"]));
    }
    for secret in NOT_ON_AWS {
        assert!(!set.contains(*secret), "{secret} is set in template.yaml");
    }
    let mut read = variables_read();
    assert!(read.len() >= 10, "the scan found {read:?}");
    read.retain(|v| !NOT_ON_AWS.contains(&v.as_str()) && !OPERATORS_OWN.contains(&v.as_str()));
    let missing: Vec<_> = read.difference(&set).collect();
    assert!(
        missing.is_empty(),
        "read by the code but not set in template.yaml: {missing:?}"
    );
    let unused: Vec<_> = set.difference(&read).collect();
    assert!(
        unused.is_empty(),
        "set in template.yaml but read by no function: {unused:?}"
    );
}

#[test]
fn the_table_is_the_adapters() {
    let t = template();
    let table = &t["Resources"]["Table"]["Properties"];
    let key = |schema: &Yaml| -> Vec<(String, String)> {
        schema
            .as_vec()
            .unwrap()
            .iter()
            .map(|k| {
                (
                    k["AttributeName"].as_str().unwrap().to_owned(),
                    k["KeyType"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let pair = |a: &str, b: &str| {
        vec![
            (a.to_owned(), "HASH".to_owned()),
            (b.to_owned(), "RANGE".to_owned()),
        ]
    };
    assert_eq!(
        key(&table["KeySchema"]),
        pair(hookline_aws::PARTITION_KEY, hookline_aws::SORT_KEY)
    );
    let gsis = table["GlobalSecondaryIndexes"].as_vec().unwrap();
    let indexes = [
        (
            hookline_aws::GSI1,
            hookline_aws::GSI1_PARTITION_KEY,
            hookline_aws::GSI1_SORT_KEY,
            "ALL",
        ),
        (
            hookline_aws::GSI2,
            hookline_aws::GSI2_PARTITION_KEY,
            hookline_aws::GSI2_SORT_KEY,
            "KEYS_ONLY",
        ),
    ];
    assert_eq!(gsis.len(), indexes.len());
    for (gsi, (name, pk, sk, projection)) in gsis.iter().zip(indexes) {
        assert_eq!(gsi["IndexName"].as_str(), Some(name));
        assert_eq!(key(&gsi["KeySchema"]), pair(pk, sk));
        assert_eq!(
            gsi["Projection"]["ProjectionType"].as_str(),
            Some(projection)
        );
    }
    assert_eq!(
        table["TimeToLiveSpecification"]["AttributeName"].as_str(),
        Some(hookline_aws::TTL_ATTRIBUTE)
    );
    assert_eq!(table["BillingMode"].as_str(), Some("PAY_PER_REQUEST"));
    // The local script makes the same table.
    let local = std::fs::read_to_string(root().join("infra/local-aws/create.py")).unwrap();
    for name in [
        hookline_aws::GSI1,
        hookline_aws::GSI1_PARTITION_KEY,
        hookline_aws::GSI2,
        hookline_aws::GSI2_PARTITION_KEY,
        "KEYS_ONLY",
        hookline_aws::TTL_ATTRIBUTE,
    ] {
        assert!(
            local.contains(&format!("\"{name}\"")),
            "create.py lacks {name}"
        );
    }
}

#[test]
fn the_deliveries_queue_fits_the_retry_schedule() {
    let t = template();
    let schedule = RetrySchedule::parse(default_of(&t, "RetrySchedule").as_str().unwrap()).unwrap();
    assert_eq!(
        schedule,
        RetrySchedule::default(),
        "the template's default is the code's"
    );
    let queue = &t["Resources"]["DeliveriesQueue"]["Properties"];
    let max_receive = number(default_of(
        &t,
        queue["RedrivePolicy"]["maxReceiveCount"].as_str().unwrap(),
    ));
    assert_eq!(
        max_receive,
        i64::from(schedule.max_attempts()),
        "one receive per attempt"
    );
    // Retention outlasts the whole schedule at its longest jitter.
    let longest: Duration = schedule.delays().iter().map(|d| d.mul_f64(1.1)).sum();
    assert!(number(&queue["MessageRetentionPeriod"]) as u64 > longest.as_secs());
    // Lambda wants the visibility timeout at least the function's timeout.
    let deliver = &t["Resources"]["DeliverFunction"]["Properties"];
    assert!(number(&queue["VisibilityTimeout"]) >= number(&deliver["Timeout"]));
    for (name, f) in functions(&t) {
        for (_, event) in f["Properties"]["Events"].as_hash().into_iter().flatten() {
            if event["Type"].as_str() == Some("SQS") {
                let types = event["Properties"]["FunctionResponseTypes"]
                    .as_vec()
                    .unwrap();
                assert_eq!(types[0].as_str(), Some("ReportBatchItemFailures"), "{name}");
            }
        }
    }
}

/// The ingest function may write event items and nothing else: under a
/// tenant's partition, with exactly the event item's attributes.
#[test]
fn the_ingest_role_writes_only_events() {
    let t = template();
    let statements = t["Resources"]["IngestFunction"]["Properties"]["Policies"][0]["Statement"]
        .as_vec()
        .unwrap();
    let puts: Vec<&Yaml> = statements
        .iter()
        .filter(|s| {
            s["Action"]
                .as_vec()
                .is_some_and(|a| a.iter().any(|a| a.as_str() == Some("dynamodb:PutItem")))
        })
        .collect();
    assert_eq!(puts.len(), 1, "one statement grants PutItem");
    let condition = &puts[0]["Condition"];
    let leading: Vec<&str> = condition["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]
        .as_vec()
        .unwrap()
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    assert_eq!(leading, ["T#*"]);
    assert!(hookline_aws::tenant_pk("shop_1").starts_with("T#"));
    let allowed: BTreeSet<&str> = condition["ForAllValues:StringEquals"]["dynamodb:Attributes"]
        .as_vec()
        .unwrap()
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    assert_eq!(
        allowed,
        hookline_aws::EVENT_ATTRIBUTES.iter().copied().collect()
    );
}

/// A test send may take the whole delivery timeout; the admin function
/// must outlast it, and API Gateway (30 s) must outlast the function.
#[test]
fn the_admin_function_outlasts_a_test_send() {
    let t = template();
    let delivery = hookline_core::settings::duration(
        t["Globals"]["Function"]["Environment"]["Variables"]["HOOKLINE_DELIVERY_TIMEOUT"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let admin = number(&t["Resources"]["AdminFunction"]["Properties"]["Timeout"]) as u64;
    assert!(
        admin >= delivery.as_secs() + 5,
        "admin {admin} s, delivery {delivery:?}"
    );
    assert!(admin < 30, "API Gateway gives up at 30 s");
}

#[tokio::test]
async fn every_http_route_is_served_by_the_router() {
    const PUBLIC: &[&str] = &["/openapi.json", "/dashboard", "/dashboard/app.js"];
    let t = template();
    let config = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .build();
    let settings = hookline_aws::AwsSettings {
        table: "t".into(),
        events_queue_url: "q".into(),
        deliveries_queue_url: "q".into(),
        events_dlq_url: None,
        deliveries_dlq_url: None,
        kms_key_id: None,
        ingest_token_secret: None,
        accept_plain_keys: false,
    };
    let backend = hookline_aws::AwsBackend::new(&config, settings);
    let api = hookline_api::ApiConfig {
        ingest_tokens: Default::default(),
        policy: Default::default(),
        key_grace: Duration::from_secs(1),
        max_rules: 100,
    };
    let app = hookline_api::router(hookline_api::ApiState::new(
        Arc::new(backend),
        Arc::new(hookline_lambda::SystemClock),
        api,
    ));
    let mut routes = 0;
    for (_, f) in functions(&t) {
        for (_, event) in f["Properties"]["Events"].as_hash().into_iter().flatten() {
            if event["Type"].as_str() != Some("HttpApi") {
                continue;
            }
            let method = event["Properties"]["Method"].as_str().unwrap();
            let path = event["Properties"]["Path"]
                .as_str()
                .unwrap()
                .replace("{id}", "x")
                .replace("{file}", "app.js");
            let method = if method == "ANY" { "GET" } else { method };
            let request = http::Request::builder()
                .method(method)
                .uri(&path)
                .body(axum::body::Body::empty())
                .unwrap();
            let status = app.clone().oneshot(request).await.unwrap().status();
            // A route that exists answers 401 without a key, before touching
            // the store; the public ones answer 200.
            let public = PUBLIC.contains(&path.as_str());
            let expected = if public { 200 } else { 401 };
            assert_eq!(
                status, expected,
                "{method} {path} is not a route of the API"
            );
            routes += 1;
        }
    }
    assert_eq!(routes, 14);
}

/// The deliverer's metrics namespace as the template sets it.
fn metrics_namespace(t: &Yaml) -> String {
    let deliver = functions(t)
        .into_iter()
        .find(|(name, _)| name == "DeliverFunction")
        .map(|(_, f)| f)
        .unwrap();
    deliver["Properties"]["Environment"]["Variables"][hookline_aws::emf::NAMESPACE_VAR]
        .as_str()
        .expect("the deliverer prints its metrics to a namespace")
        .to_owned()
}

/// Whether the deliverer emits `metric` with exactly `dimensions`.
fn emitted(metric: &str, dimensions: &[&str]) -> bool {
    hookline_aws::emf::METRICS
        .iter()
        .any(|(name, dim)| *name == metric && dim.iter().copied().eq(dimensions.iter().copied()))
}

#[test]
fn every_alarm_on_hooklines_metrics_is_on_one_the_deliverer_emits() {
    let t = template();
    let namespace = metrics_namespace(&t);
    let mut on_ours = Vec::new();
    for (name, r) in t["Resources"].as_hash().unwrap() {
        let p = &r["Properties"];
        if r["Type"].as_str() != Some("AWS::CloudWatch::Alarm")
            || p["Namespace"].as_str() != Some(namespace.as_str())
        {
            continue;
        }
        let metric = p["MetricName"].as_str().unwrap();
        let dimensions: Vec<&str> = p["Dimensions"]
            .as_vec()
            .map(|d| d.iter().map(|d| d["Name"].as_str().unwrap()).collect())
            .unwrap_or_default();
        assert!(
            emitted(metric, &dimensions),
            "{name:?}: the deliverer emits no {metric} with {dimensions:?}"
        );
        on_ours.push(metric.to_owned());
    }
    on_ours.sort();
    assert_eq!(
        on_ours,
        [
            "hookline_deliveries_ended_total",
            "hookline_oldest_due_age_seconds"
        ],
        "an alarm on dead deliveries and one on the wait for a first attempt"
    );
}

#[test]
fn the_dashboard_shows_only_metrics_the_deliverer_emits() {
    let t = template();
    let namespace = metrics_namespace(&t);
    let body = t["Resources"]["Dashboard"]["Properties"]["DashboardBody"]
        .as_str()
        .unwrap()
        .replace("${AWS::Region}", "eu-west-1");
    let dashboard: serde_json::Value = serde_json::from_str(&body).expect("the body is JSON");
    let mut shown = 0;
    for widget in dashboard["widgets"].as_array().unwrap() {
        for line in widget["properties"]["metrics"].as_array().unwrap() {
            let parts: Vec<&str> = line
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|p| p.as_str())
                .collect();
            assert_eq!(parts[0], namespace, "{line}");
            let dimensions: Vec<&str> = parts[2..].iter().step_by(2).copied().collect();
            assert!(emitted(parts[1], &dimensions), "{line}");
            shown += 1;
        }
    }
    assert!(shown >= hookline_aws::emf::METRICS.len(), "{shown} lines");
}
