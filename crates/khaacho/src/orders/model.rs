//! The order, its lines and events, and the one state machine every change goes through.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// Where an order is in its life. See DOMAIN.md for the diagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Accepted by the API and durable.
    Received,
    /// Every line resolved, priced and checked.
    Validated,
    /// Needs a person: an operator approves or rejects.
    OnHold,
    /// Offers sent to vendors.
    Routed,
    /// Every vendor part accepted.
    Accepted,
    /// On its way.
    Dispatched,
    /// Handed over.
    Delivered,
    /// Receipt confirmed.
    Completed,
    /// Refused by a rule or an operator (terminal).
    Rejected,
    /// Withdrawn (terminal).
    Cancelled,
    /// Processing exhausted its retries (terminal; an operator may retry the job).
    Failed,
}

impl OrderStatus {
    /// Every status.
    pub const ALL: [OrderStatus; 11] = [
        OrderStatus::Received,
        OrderStatus::Validated,
        OrderStatus::OnHold,
        OrderStatus::Routed,
        OrderStatus::Accepted,
        OrderStatus::Dispatched,
        OrderStatus::Delivered,
        OrderStatus::Completed,
        OrderStatus::Rejected,
        OrderStatus::Cancelled,
        OrderStatus::Failed,
    ];

    /// Stored and serialised name.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Received => "received",
            OrderStatus::Validated => "validated",
            OrderStatus::OnHold => "on_hold",
            OrderStatus::Routed => "routed",
            OrderStatus::Accepted => "accepted",
            OrderStatus::Dispatched => "dispatched",
            OrderStatus::Delivered => "delivered",
            OrderStatus::Completed => "completed",
            OrderStatus::Rejected => "rejected",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::Failed => "failed",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<OrderStatus> {
        OrderStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether nothing can follow.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            OrderStatus::Completed
                | OrderStatus::Rejected
                | OrderStatus::Cancelled
                | OrderStatus::Failed
        )
    }

    /// Whether the state machine allows `self → to`.
    pub fn can_become(self, to: OrderStatus) -> bool {
        use OrderStatus::*;
        if self == Failed && to == Received {
            // An operator retried the dead job from the dead-letter view.
            return true;
        }
        if self.is_terminal() {
            return false;
        }
        match (self, to) {
            (Received, Validated | Rejected | Failed | OnHold) => true,
            (Validated, Routed | OnHold | Rejected | Failed) => true,
            // An approved hold continues to the state it was held from (or onwards).
            (OnHold, Received | Validated | Routed | Delivered | Rejected | Failed) => true,
            (Routed, Accepted | OnHold | Failed) => true,
            (Accepted, Dispatched) => true,
            // A vendor gave its accepted part back: it is offered to the next vendor, or
            // waits for an operator when none is left.
            (Accepted, Routed | OnHold) => true,
            (Dispatched, Delivered) => true,
            // The retailer confirms receipt, or reports an issue an operator settles.
            (Delivered, Completed | OnHold) => true,
            (_, Cancelled) => true,
            _ => false,
        }
    }

    /// A rough share of the way to completion, for progress bars.
    pub fn progress_percent(self) -> u8 {
        match self {
            OrderStatus::Received => 10,
            OrderStatus::Validated => 30,
            OrderStatus::OnHold => 30,
            OrderStatus::Routed => 45,
            OrderStatus::Accepted => 60,
            OrderStatus::Dispatched => 75,
            OrderStatus::Delivered => 90,
            OrderStatus::Completed
            | OrderStatus::Rejected
            | OrderStatus::Cancelled
            | OrderStatus::Failed => 100,
        }
    }
}

/// Who changed an order, for the event history.
#[derive(Clone, Debug)]
pub struct Actor {
    /// An id or a name (`system` for the pipeline).
    pub id: String,
    /// `system`, `admin`, `operator`, `vendor`, `retailer`.
    pub role: &'static str,
}

impl Actor {
    /// The pipeline itself.
    pub fn system() -> Self {
        Self {
            id: "system".into(),
            role: "system",
        }
    }
}

/// Priority a retailer may ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum OrderPriority {
    /// Processed before normal orders.
    High,
    /// The default.
    #[default]
    Normal,
    /// Processed when nothing else waits.
    Low,
}

impl OrderPriority {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderPriority::High => "high",
            OrderPriority::Normal => "normal",
            OrderPriority::Low => "low",
        }
    }

    /// The job priority that carries it.
    pub fn job_priority(self) -> crate::queue::Priority {
        match self {
            OrderPriority::High => crate::queue::Priority::High,
            OrderPriority::Normal => crate::queue::Priority::Normal,
            OrderPriority::Low => crate::queue::Priority::Low,
        }
    }
}

/// How an order is paid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum PaymentMode {
    /// On the retailer's credit account (the default): reserved at validation, charged at
    /// delivery.
    #[default]
    Credit,
    /// Cash on delivery: no credit is reserved.
    Cash,
}

impl PaymentMode {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentMode::Credit => "credit",
            PaymentMode::Cash => "cash",
        }
    }
}

/// An order row.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct OrderRow {
    /// Order id (UUIDv7).
    pub id: Uuid,
    /// Creation time, also the partition key.
    pub created_at_ms: i64,
    /// Buying retailer.
    pub retailer_id: Uuid,
    /// Status name.
    pub status: String,
    /// Priority name.
    pub priority: String,
    /// `api`, `whatsapp`, …
    pub channel: String,
    /// Free note from the retailer.
    pub note: Option<String>,
    /// The order as the retailer wrote it, for text orders.
    pub source_text: Option<String>,
    /// Sum of line subtotals.
    pub subtotal_paisa: Option<i64>,
    /// Sum of line VAT.
    pub vat_paisa: Option<i64>,
    /// Subtotal plus VAT.
    pub total_paisa: Option<i64>,
    /// Why it is on hold.
    pub hold_reason: Option<String>,
    /// The state an approved hold continues to.
    pub held_from: Option<String>,
    /// Why it was rejected.
    pub reject_reason: Option<String>,
    /// Request id of the intake.
    pub correlation_id: Option<String>,
    /// Last change.
    pub updated_at_ms: i64,
    /// `credit` (a hold is reserved at validation) or `cash` (paid on delivery).
    pub payment_mode: String,
}

impl OrderRow {
    /// The parsed status (an unknown stored name would be a migration bug).
    pub fn status(&self) -> OrderStatus {
        OrderStatus::parse(&self.status).unwrap_or(OrderStatus::Failed)
    }
}

/// An order line row.
#[derive(Clone, Debug, sqlx::FromRow, Deserialize)]
pub struct LineRow {
    /// Position in the order, from 1.
    pub line_no: i32,
    /// Requested SKU.
    pub sku: String,
    /// Requested quantity (milli-units of `unit`).
    pub qty_milli: i64,
    /// Requested unit.
    pub unit: String,
    /// Resolved product.
    pub product_id: Option<Uuid>,
    /// Product name snapshot.
    pub product_name: Option<String>,
    /// Quantity in the base unit.
    pub base_qty_milli: Option<i64>,
    /// Base unit snapshot.
    pub base_unit: Option<String>,
    /// Price per base unit.
    pub unit_price_paisa: Option<i64>,
    /// Line amount before VAT.
    pub subtotal_paisa: Option<i64>,
    /// VAT of the line.
    pub vat_paisa: Option<i64>,
    /// Line amount with VAT.
    pub total_paisa: Option<i64>,
    /// Offer that set the price.
    pub offer_id: Option<Uuid>,
    /// Vendor of that offer.
    pub vendor_id: Option<Uuid>,
    /// Why that price ("bulk tier from 10").
    pub price_reason: Option<String>,
    /// Why the line was refused.
    pub reject_code: Option<String>,
    /// Human detail of the refusal.
    pub reject_detail: Option<String>,
}

/// An order event row.
#[derive(Clone, Debug, sqlx::FromRow, Deserialize)]
pub struct EventRow {
    /// Event id.
    pub id: Uuid,
    /// Previous status (none for the intake).
    pub from_status: Option<String>,
    /// New status.
    pub to_status: String,
    /// Who.
    pub actor: String,
    /// In which role.
    pub role: String,
    /// Why.
    pub reason: Option<String>,
    /// Structured detail.
    pub detail: Option<sqlx::types::Json<serde_json::Value>>,
    /// Time (epoch ms).
    pub at_ms: i64,
}

/// The creation time embedded in a UUIDv7 (the partition key of the order's rows).
pub fn created_at_of(id: Uuid) -> Option<i64> {
    let ts = id.get_timestamp()?;
    let (secs, nanos) = ts.to_unix();
    Some(secs as i64 * 1000 + (nanos / 1_000_000) as i64)
}

#[cfg(test)]
mod tests {
    use super::OrderStatus::*;
    use super::*;

    #[test]
    fn state_machine_allows_only_the_diagram() {
        assert!(Received.can_become(Validated));
        assert!(Received.can_become(Rejected));
        assert!(Validated.can_become(OnHold));
        assert!(OnHold.can_become(Validated));
        assert!(Accepted.can_become(Cancelled));
        assert!(!Received.can_become(Delivered));
        assert!(!Validated.can_become(Received));
        assert!(!Rejected.can_become(Validated));
        assert!(!Cancelled.can_become(Cancelled));
        assert!(!Completed.can_become(Cancelled));
        assert!(Failed.can_become(Received));
        assert!(Delivered.can_become(OnHold));
        assert!(OnHold.can_become(Delivered));
        assert!(!Delivered.can_become(Routed));
        assert!(!Accepted.can_become(Delivered));
        assert!(Accepted.can_become(Routed));
        assert!(!Dispatched.can_become(Routed));
        assert!(!Failed.can_become(Validated));
        for s in OrderStatus::ALL {
            assert_eq!(OrderStatus::parse(s.as_str()), Some(s));
        }
    }

    #[test]
    fn uuid_v7_carries_creation_time() {
        let before = chrono::Utc::now().timestamp_millis();
        let id = Uuid::now_v7();
        let at = created_at_of(id).unwrap();
        assert!(at >= before && at <= before + 1000);
    }
}
