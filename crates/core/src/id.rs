//! The identifiers the ports exchange: a tenant's, a rule's, an event's and a
//! delivery's. Each is its own type, so one cannot be passed where another is
//! meant, and each is checked once, where it enters: [`TenantId::parse`] and
//! the like at the edge (limits of [`check_id`]), [`RuleId::generate`] and
//! [`DeliveryId::of`] where Hookline makes one. What a store reads back was
//! checked on its way in, so it is taken as it is ([`TenantId::stored`]).
//!
//! An id reads as the text it is (`Deref<Target = str>`), which is how every
//! adapter keys and logs it.

use std::fmt;
use std::ops::Deref;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{FieldError, check_id};
use crate::time::Timestamp;

/// What every id type does, for code that takes any of them (a route's path).
pub trait Identifier: Sized + Deref<Target = str> {
    /// `text` as this id, or the error naming `field`.
    fn from_text(field: &str, text: String) -> Result<Self, FieldError>;
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// `text` as this id, or the error naming `field`.
            pub fn parse(field: &str, text: impl Into<String>) -> Result<Self, FieldError> {
                let text = text.into();
                check_id(field, &text)?;
                Ok(Self(text))
            }

            /// An id a store kept: it was checked when it was stored.
            pub fn stored(text: impl Into<String>) -> Self {
                Self(text.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl Identifier for $name {
            fn from_text(field: &str, text: String) -> Result<Self, FieldError> {
                Self::parse(field, text)
            }
        }

        impl Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }
    };
}

id_type!(
    /// A merchant's account, named by the platform.
    TenantId
);
id_type!(
    /// A rule, named by Hookline: `rul_`, then creation time and random bits.
    RuleId
);
id_type!(
    /// An event, named by the platform; unique per tenant.
    EventId
);
id_type!(
    /// A delivery, and so its `webhook-id`: `msg_` and a hash of what it
    /// delivers ([`DeliveryId::of`]).
    DeliveryId
);

impl RuleId {
    pub const PREFIX: &'static str = "rul_";

    /// A new rule's id: 12 hex digits of milliseconds, then 16 of `random`.
    /// It sorts by creation time, so a DynamoDB list by id comes in creation
    /// order as SQLite's does.
    pub fn generate(now: Timestamp, random: [u8; 8]) -> RuleId {
        RuleId(format!(
            "{}{:012x}{}",
            Self::PREFIX,
            now.as_millis(),
            hex::encode(random)
        ))
    }
}

impl EventId {
    /// The event raised when the rule `rule_id` was disabled at `at`: the
    /// same for the same disabling, so raising it twice delivers it once.
    pub fn rule_disabled(rule_id: &RuleId, at: Timestamp) -> EventId {
        EventId(format!("evt_rule_disabled_{rule_id}_{}", at.as_millis()))
    }

    /// The sample event of a test send at `now`.
    pub fn test_send(now: Timestamp) -> EventId {
        EventId(format!("evt_test_{}", now.as_millis()))
    }
}

impl DeliveryId {
    pub const PREFIX: &'static str = "msg_";

    /// The delivery of `event_id` to `rule_id` (for one line of the order, when
    /// the rule is per order line): the same whatever is retried, redriven or
    /// replayed. Hex keeps it free of `.`, which separates the signed parts.
    pub fn of(
        tenant_id: &TenantId,
        event_id: &EventId,
        rule_id: &RuleId,
        line_id: Option<&str>,
    ) -> DeliveryId {
        let mut h = Sha256::new();
        for part in [tenant_id.as_str(), event_id, rule_id] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        if let Some(line) = line_id {
            h.update([1]);
            h.update(line.as_bytes());
        }
        DeliveryId(format!(
            "{}{}",
            Self::PREFIX,
            hex::encode(&h.finalize()[..16])
        ))
    }

    /// `planned` stamped with the moment its event was received: `msg_`, 12
    /// hex digits of milliseconds, then `planned`'s hash. The AWS form keys
    /// its delivery log by that moment, so a lookup by id finds the key
    /// from the id alone; the same event stamps the same id whenever it is
    /// routed.
    pub fn stamped(received_at: Timestamp, planned: &DeliveryId) -> DeliveryId {
        let hash = planned.strip_prefix(Self::PREFIX).unwrap_or(planned);
        DeliveryId(format!(
            "{}{:012x}{hash}",
            Self::PREFIX,
            received_at.as_millis().max(0)
        ))
    }

    /// The moment a [`DeliveryId::stamped`] id carries; `None` for an id
    /// made without one (by [`DeliveryId::of`] alone, or a test send).
    pub fn stamp(&self) -> Option<Timestamp> {
        let rest = self.strip_prefix(Self::PREFIX)?;
        if rest.len() != 12 + 32 || !rest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let millis = i64::from_str_radix(&rest[..12], 16).ok()?;
        Some(Timestamp::from_millis(millis))
    }

    /// A test send's id: `msg_test_`, then time and random bits. No real
    /// delivery has one (theirs are all hex after the prefix).
    pub fn test_send(now: Timestamp, random: [u8; 8]) -> DeliveryId {
        DeliveryId(format!(
            "{}test_{:012x}{}",
            Self::PREFIX,
            now.as_millis(),
            hex::encode(random)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_checks_the_limits_and_names_the_field() {
        assert_eq!(TenantId::parse("tenant_id", "shop").unwrap(), "shop");
        let empty = TenantId::parse("tenant_id", "").unwrap_err();
        assert_eq!(empty.field, "tenant_id");
        let long = RuleId::parse("rule_id", "r".repeat(201)).unwrap_err();
        assert!(long.message.contains("200"), "{}", long.message);
        assert!(EventId::parse("id", "a\nb").is_err());
    }

    #[test]
    fn generated_ids_carry_their_prefix_and_sort_by_time() {
        let early = RuleId::generate(Timestamp::from_millis(1), [0xff; 8]);
        let late = RuleId::generate(Timestamp::from_millis(2), [0; 8]);
        assert!(early.starts_with(RuleId::PREFIX));
        assert!(early < late);
        let t = TenantId::stored("t");
        let e = EventId::stored("e");
        let r = RuleId::stored("r");
        let id = DeliveryId::of(&t, &e, &r, None);
        assert!(id.starts_with(DeliveryId::PREFIX));
        assert_eq!(id, DeliveryId::of(&t, &e, &r, None));
        assert_ne!(id, DeliveryId::of(&t, &e, &r, Some("l1")));
        assert!(!id.contains('.') && id.len() == 36, "{id}");
        assert_eq!(id.stamp(), None);
        let at = Timestamp::from_millis(1_795_953_600_123);
        let stamped = DeliveryId::stamped(at, &id);
        assert_eq!(stamped.stamp(), Some(at));
        assert!(
            stamped.ends_with(&id[DeliveryId::PREFIX.len()..]),
            "{stamped}"
        );
        assert!(DeliveryId::stamped(Timestamp::from_millis(1), &id) < stamped);
        assert_eq!(DeliveryId::test_send(at, [0; 8]).stamp(), None);
        // Separators keep ("ab", "c") and ("a", "bc") apart.
        assert_ne!(
            DeliveryId::of(&t, &EventId::stored("ab"), &RuleId::stored("c"), None),
            DeliveryId::of(&t, &EventId::stored("a"), &RuleId::stored("bc"), None)
        );
    }
}
