//! The six business events a merchant can hook a rule to.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A trigger's name is spelled once, in [`Trigger::as_str`]: serde, parsing,
/// error messages and the OpenAPI document all read it from there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Trigger {
    OrderPaid,
    InvoiceCreated,
    SubscriptionEnded,
    AffiliateAccepted,
    AffiliateRejected,
    AffiliateStopped,
    /// Hookline's own: a rule was disabled for failing (not from the platform).
    RuleDisabled,
}

impl Trigger {
    /// What rules may subscribe to: the platform's triggers and Hookline's.
    pub const ALL: [Trigger; 7] = [
        Trigger::OrderPaid,
        Trigger::InvoiceCreated,
        Trigger::SubscriptionEnded,
        Trigger::AffiliateAccepted,
        Trigger::AffiliateRejected,
        Trigger::AffiliateStopped,
        Trigger::RuleDisabled,
    ];

    /// Whether the platform may report it; operational events are Hookline's.
    pub const fn from_platform(self) -> bool {
        !matches!(self, Trigger::RuleDisabled)
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Trigger::OrderPaid => "order.paid",
            Trigger::InvoiceCreated => "invoice.created",
            Trigger::SubscriptionEnded => "subscription.ended",
            Trigger::AffiliateAccepted => "affiliate.accepted",
            Trigger::AffiliateRejected => "affiliate.rejected",
            Trigger::AffiliateStopped => "affiliate.stopped",
            Trigger::RuleDisabled => "rule.disabled",
        }
    }

    /// The `data` of a rule's test delivery: marked as a test, and shaped
    /// like what the trigger's events carry.
    pub fn sample_data(self) -> String {
        let noun = self.noun();
        format!(
            r#"{{"test":true,"object":"{noun}","id":"{noun}_test","amount":4900,"currency":"EUR"}}"#
        )
    }

    /// What the event is about, as Plug&Pay's thin envelope names it when the
    /// event carries no `subject`: the trigger's noun.
    pub const fn noun(self) -> &'static str {
        match self {
            Trigger::OrderPaid => "order",
            Trigger::InvoiceCreated => "invoice",
            Trigger::SubscriptionEnded => "subscription",
            Trigger::AffiliateAccepted | Trigger::AffiliateRejected | Trigger::AffiliateStopped => {
                "affiliate"
            }
            Trigger::RuleDisabled => "rule",
        }
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is no trigger; its message lists the ones there are.
#[derive(Debug, thiserror::Error)]
#[error("unknown trigger {0:?}; expected one of {list}", list = known_triggers(|_| true))]
pub struct UnknownTrigger(pub String);

impl FromStr for Trigger {
    type Err = UnknownTrigger;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Trigger::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownTrigger(s.to_owned()))
    }
}

impl Serialize for Trigger {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Trigger {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// The names as a string enum in the OpenAPI document, read from the one
/// spelling.
#[cfg(feature = "openapi")]
fn name_schema(
    accepted: fn(Trigger) -> bool,
    description: &str,
) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(trigger_names(accepted)))
        .description(Some(description))
        .into()
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Trigger {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        name_schema(
            |_| true,
            "What a rule may subscribe to: the platform's events and Hookline's own `rule.disabled`.",
        )
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Trigger {}

/// The triggers the platform may report, in the OpenAPI document.
#[cfg(feature = "openapi")]
pub struct PlatformTrigger;

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for PlatformTrigger {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        name_schema(Trigger::from_platform, "What the platform reports.")
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for PlatformTrigger {}

/// The names, in [`Trigger::ALL`]'s order, that `accepted` lets through.
pub fn trigger_names(accepted: fn(Trigger) -> bool) -> Vec<&'static str> {
    Trigger::ALL
        .into_iter()
        .filter(|t| accepted(*t))
        .map(Trigger::as_str)
        .collect()
}

/// The message listing what is accepted, for errors that name a bad trigger.
pub fn known_triggers(accepted: fn(Trigger) -> bool) -> String {
    trigger_names(accepted).join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for t in Trigger::ALL {
            assert_eq!(t.as_str().parse::<Trigger>().unwrap(), t);
            assert_eq!(serde_json::to_string(&t).unwrap(), format!("\"{t}\""));
        }
        assert!("order.refunded".parse::<Trigger>().is_err());
    }
}
