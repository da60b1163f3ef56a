//! Rule traffic on SQLite: the tallies the deliverer counted in memory,
//! written into `rule_traffic` within a settle's transaction once they are
//! due (`SqliteOptions::traffic_every`: each busy rule costs three
//! statements that often, not one an attempt), and a rule's day of buckets
//! read back for its health.

use hookline_core::Timestamp;
use hookline_core::id::{RuleId, TenantId};
use hookline_core::ports::StoreError;
use hookline_core::traffic::{BUCKET, KEPT, Tallies, Tally};
use rusqlite::{Connection, OptionalExtension, params};

use crate::error::unavailable;

/// The most tallies one settle's transaction writes (three statements
/// each): the writer thread is everyone's, so a flood of busy rules is
/// written a few settles at a time.
pub(crate) const WRITES_PER_COMMIT: usize = 64;

/// Adds `tallies` into their stored buckets, and drops buckets older than
/// a day as of `now`.
pub(crate) fn write(conn: &Connection, tallies: Tallies, now: Timestamp) -> Result<(), StoreError> {
    for ((tenant, rule, bucket), tally) in tallies {
        let key = params![tenant.as_str(), rule.as_str(), bucket.as_millis()];
        let stored: Option<String> = conn
            .prepare_cached(
                "SELECT tally FROM rule_traffic WHERE tenant_id = ?1 AND rule_id = ?2 AND bucket = ?3",
            )
            .and_then(|mut st| st.query_row(key, |r| r.get(0)).optional())
            .map_err(unavailable)?;
        let mut sum = match stored.map(|s| serde_json::from_str::<Tally>(&s)) {
            Some(Ok(stored)) => stored,
            Some(Err(e)) => {
                // Counting goes on; a bucket that does not read is begun anew.
                tracing::warn!(tenant = %tenant, rule = %rule, error = %e,
                    "a stored traffic bucket does not decode; it is replaced");
                Tally::default()
            }
            None => Tally::default(),
        };
        sum.absorb(&tally);
        let text = serde_json::to_string(&sum)
            .map_err(|e| StoreError::unreadable("a traffic tally", e))?;
        conn.prepare_cached(
            "INSERT OR REPLACE INTO rule_traffic (tenant_id, rule_id, bucket, tally)
             VALUES (?1, ?2, ?3, ?4)",
        )
        .and_then(|mut st| {
            st.execute(params![
                tenant.as_str(),
                rule.as_str(),
                bucket.as_millis(),
                text
            ])
        })
        .map_err(unavailable)?;
    }
    conn.prepare_cached("DELETE FROM rule_traffic WHERE bucket < ?1")
        .and_then(|mut st| st.execute([oldest_kept(now).as_millis()]))
        .map_err(unavailable)?;
    Ok(())
}

/// The stored buckets of a rule that began within the last day.
pub(crate) fn read(
    conn: &Connection,
    tenant: &TenantId,
    rule: &RuleId,
    now: Timestamp,
) -> Result<Vec<(Timestamp, Tally)>, StoreError> {
    let rows = conn
        .prepare_cached(
            "SELECT bucket, tally FROM rule_traffic
             WHERE tenant_id = ?1 AND rule_id = ?2 AND bucket >= ?3",
        )
        .and_then(|mut st| {
            st.query_map(
                params![tenant.as_str(), rule.as_str(), oldest_kept(now).as_millis()],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
            )?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(unavailable)?;
    rows.into_iter()
        .map(|(bucket, text)| {
            serde_json::from_str(&text)
                .map(|tally| (Timestamp::from_millis(bucket), tally))
                .map_err(|e| StoreError::unreadable("a traffic bucket", e))
        })
        .collect()
}

/// Removes a deleted rule's buckets.
pub(crate) fn forget(conn: &Connection, tenant: &str, rule: &str) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM rule_traffic WHERE tenant_id = ?1 AND rule_id = ?2")
        .and_then(|mut st| st.execute(params![tenant, rule]))
        .map_err(unavailable)?;
    Ok(())
}

fn oldest_kept(now: Timestamp) -> Timestamp {
    Timestamp::from_millis(now.as_millis() - (KEPT + BUCKET).as_millis() as i64)
}
