//! Crashes and restarts: what was accepted is delivered.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::support::*;

#[tokio::test]
async fn kill_9_mid_delivery_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_in(&dir);
    let hookline = Hookline::start(&db, &[]);
    let shop = hookline.tenant("shop_1");
    // Before the crash the receiver holds every request open, so deliveries
    // are in flight when the process dies.
    let crashed = Arc::new(AtomicBool::new(false));
    let flag = crashed.clone();
    let receiver = Receiver::start_with(move |_, _| {
        if flag.load(Ordering::SeqCst) {
            Reply::Status(200)
        } else {
            Reply::Hang
        }
    })
    .await;
    hookline.paid_orders_to(&shop, receiver.url("/")).await;
    for i in 0..20 {
        let (status, _) = hookline
            .send_event(&event(&format!("evt_{i}"), "shop_1", "order.paid"))
            .await;
        assert_eq!(status, 202);
    }
    receiver.wait_for(1).await;
    hookline.kill9();
    crashed.store(true, Ordering::SeqCst);
    let in_flight_at_crash = receiver.hits().len();
    assert!(in_flight_at_crash >= 1);

    let hookline = Hookline::start(&db, &[]);
    let deliveries = hookline.deliveries(&shop, "limit=100").await;
    assert_eq!(
        deliveries.len(),
        20,
        "every accepted event has its delivery"
    );
    for d in &deliveries {
        hookline
            .wait_delivery(&shop, d["id"].as_str().unwrap(), "succeeded")
            .await;
    }
    let hits = receiver.hits();
    let mut sends: HashMap<String, usize> = HashMap::new();
    for h in &hits {
        *sends.entry(h.webhook_id().to_owned()).or_default() += 1;
    }
    assert_eq!(sends.len(), 20, "every delivery reached the receiver");
    // Each delivery went out at most once before the crash (a request already
    // on its way may be read by the receiver only after the kill) and once after.
    assert!(sends.values().all(|n| *n <= 2), "{sends:?}");
    // The ones in flight at the crash were sent again with the same webhook-id.
    for h in &hits[..in_flight_at_crash] {
        assert_eq!(
            sends[h.webhook_id()],
            2,
            "{} was not sent again",
            h.webhook_id()
        );
    }
}

#[tokio::test]
async fn a_graceful_stop_keeps_pending_retries_for_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_in(&dir);
    let env = [("HOOKLINE_RETRY_SCHEDULE", "500ms")];
    let hookline = Hookline::start(&db, &env);
    let shop = hookline.tenant("shop_1");
    let receiver = Receiver::start_with(|n, _| Reply::Status(if n == 0 { 503 } else { 200 })).await;
    hookline.paid_orders_to(&shop, receiver.url("/")).await;
    hookline
        .send_event(&event("evt_1", "shop_1", "order.paid"))
        .await;
    receiver.wait_for(1).await;
    let status = hookline.stop();
    assert!(
        status.success(),
        "SIGTERM ends hookline cleanly: {status:?}"
    );

    let hookline = Hookline::start(&db, &env);
    let id = hookline.deliveries(&shop, "").await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let delivery = hookline.wait_delivery(&shop, &id, "succeeded").await;
    assert_eq!(delivery["attempts"].as_array().unwrap().len(), 2);
    let hits = receiver.hits();
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[0].webhook_id(), hits[1].webhook_id());
}
