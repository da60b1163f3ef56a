//! The six business events a merchant can hook a rule to.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Trigger {
    #[serde(rename = "order.paid")]
    OrderPaid,
    #[serde(rename = "invoice.created")]
    InvoiceCreated,
    #[serde(rename = "subscription.ended")]
    SubscriptionEnded,
    #[serde(rename = "affiliate.accepted")]
    AffiliateAccepted,
    #[serde(rename = "affiliate.rejected")]
    AffiliateRejected,
    #[serde(rename = "affiliate.stopped")]
    AffiliateStopped,
    /// Hookline's own: a rule was disabled for failing (not from the platform).
    #[serde(rename = "rule.disabled")]
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

#[derive(Debug, thiserror::Error)]
#[error("unknown trigger {0:?}")]
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

/// The message listing what is accepted, for errors that name a bad trigger.
pub fn known_triggers(accepted: fn(Trigger) -> bool) -> String {
    Trigger::ALL
        .into_iter()
        .filter(|t| accepted(*t))
        .map(Trigger::as_str)
        .collect::<Vec<_>>()
        .join(", ")
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
