//! People acting on an order: an operator approves or rejects a held order; an order is
//! cancelled. Each is one transaction through the state machine.

use super::intake::{CheckedLine, IntakeError, LineInput};
use super::model::{Actor, OrderRow, OrderStatus};
use super::pipeline::continue_after;
use super::repo;
use super::transition::{self, TransitionResult};
use crate::app::App;
use crate::base::audit::{self, Entry};
use crate::base::scope::Scope;
use crate::base::wire::error::FieldError;
use crate::credit::ledger::{self, LedgerError, Reserve};
use crate::fulfilment::service::cancel_parts;

/// `extra`'s keys added to `detail` (an object, or nothing yet).
fn merge(detail: Option<serde_json::Value>, extra: serde_json::Value) -> serde_json::Value {
    let mut out = detail.unwrap_or_else(|| serde_json::json!({}));
    if let (Some(o), serde_json::Value::Object(e)) = (out.as_object_mut(), extra) {
        o.extend(e);
    }
    out
}

/// Holds an operator may approve past the credit rules: the approval reserves the order's
/// total as an override, recorded with who approved it.
const CREDIT_HOLDS: [&str; 2] = ["credit_limit", "credit_band_cap"];

/// Why an action was refused.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// The request is invalid; every problem is listed by field.
    #[error("invalid request")]
    Invalid(Vec<FieldError>),
    /// No such order.
    #[error("order not found")]
    NotFound,
    /// The state machine forbids it; the message names the order's state.
    #[error("{0}")]
    Illegal(String),
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] sqlx::Error),
}

impl From<LedgerError> for ActionError {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::Storage(e) => ActionError::Storage(e),
            other => ActionError::Illegal(other.to_string()),
        }
    }
}

/// The credit side of an action, in its transaction: approving a credit hold reserves the
/// total as an override; rejecting or cancelling before delivery releases the hold; cancelling
/// after delivery writes a reversing credit of what was posted. Returns the event detail.
async fn settle_credit(
    tx: &mut crate::base::db::Tx,
    order: &OrderRow,
    action: Action,
    actor: &Actor,
) -> Result<Option<serde_json::Value>, ActionError> {
    let credit = order.payment_mode == super::model::PaymentMode::Credit.as_str();
    match action {
        Action::Approve
            if credit
                && order
                    .hold_reason
                    .as_deref()
                    .is_some_and(|r| CREDIT_HOLDS.contains(&r)) =>
        {
            let total = order.total_paisa.unwrap_or(0);
            match ledger::reserve_override(tx, order.retailer_id, order.id, total, &actor.id)
                .await?
            {
                Reserve::Reserved | Reserve::AlreadyHeld => Ok(Some(
                    serde_json::json!({ "credit_override": true, "held_paisa": total }),
                )),
                Reserve::OverLimit | Reserve::Blocked => Err(ActionError::Illegal(
                    "the retailer's credit is blocked; unblock it or reject the order".into(),
                )),
            }
        }
        Action::Approve => Ok(None),
        // Delivered, or held after delivery because the retailer reported an issue.
        Action::Cancel
            if matches!(
                order.status(),
                OrderStatus::Delivered | OrderStatus::Completed
            ) || order.held_from.as_deref() == Some(OrderStatus::Delivered.as_str()) =>
        {
            let posted = crate::credit::repo::hold(tx, order.id)
                .await?
                .and_then(|h| h.posted_paisa)
                .unwrap_or(0);
            if posted > 0 {
                let entry = ledger::reverse_after_delivery(
                    tx,
                    order.id,
                    posted,
                    "cancelled after delivery",
                )
                .await?;
                return Ok(Some(
                    serde_json::json!({ "refund_paisa": -entry.entry.amount_paisa }),
                ));
            }
            Ok(None)
        }
        Action::Reject | Action::Cancel => {
            ledger::void(tx, order.id).await?;
            Ok(None)
        }
        Action::Confirm | Action::ReportIssue => Ok(None),
    }
}

impl ActionError {
    fn field(field: &str, message: &str) -> Self {
        ActionError::Invalid(vec![FieldError::new(field, message)])
    }
}

impl From<IntakeError> for ActionError {
    fn from(e: IntakeError) -> Self {
        match e {
            IntakeError::Invalid(errors) => ActionError::Invalid(errors),
            IntakeError::Storage(e) => ActionError::Storage(e),
            other => ActionError::Invalid(vec![FieldError::new("lines", other.to_string())]),
        }
    }
}

/// What a person asks of an order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Continue a held order.
    Approve,
    /// Refuse it.
    Reject,
    /// Withdraw it.
    Cancel,
    /// The retailer confirms receipt of a delivered order.
    Confirm,
    /// The retailer reports a problem with a delivered order: held for an operator.
    ReportIssue,
}

impl Action {
    pub(crate) fn verb(self) -> &'static str {
        match self {
            Action::Approve => "approved",
            Action::Reject => "rejected",
            Action::Cancel => "cancelled",
            Action::Confirm => "confirmed",
            Action::ReportIssue => "reported",
        }
    }
}

/// `reason` as `action` takes it: trimmed, empty as none, required to reject or to report an
/// issue, at most 500 characters.
pub(crate) fn checked_reason(
    action: Action,
    reason: Option<&str>,
) -> Result<Option<&str>, ActionError> {
    let reason = reason.map(str::trim).filter(|r| !r.is_empty());
    if matches!(action, Action::Reject | Action::ReportIssue) && reason.is_none() {
        let message = if action == Action::Reject {
            "a rejection needs a reason"
        } else {
            "say what is wrong with the delivery"
        };
        return Err(ActionError::field("reason", message));
    }
    if reason.is_some_and(|r| r.chars().count() > 500) {
        return Err(ActionError::field(
            "reason",
            "reason must be at most 500 characters",
        ));
    }
    Ok(reason)
}

/// Why `order` (as read under its lock) cannot be confirmed or reported on: only a delivered
/// order can.
pub(crate) fn not_delivered(action: Action, order: &OrderRow) -> Option<ActionError> {
    let from = order.status();
    (from != OrderStatus::Delivered).then(|| {
        ActionError::Illegal(format!(
            "only a delivered order can be {}; this order is {}",
            action.verb(),
            from.as_str()
        ))
    })
}

/// The audit name of `action`.
pub(crate) fn audit_verb(action: Action) -> &'static str {
    match action {
        Action::Approve => "order.approve",
        Action::Reject => "order.reject",
        Action::Cancel => "order.cancel",
        Action::Confirm => "order.confirm",
        Action::ReportIssue => "order.report_issue",
    }
}

/// Whether `scope` may act on `order` (another tenant's order is "not found").
pub(crate) fn in_scope(scope: Scope, order: &OrderRow) -> bool {
    match scope {
        Scope::All => true,
        Scope::Retailer(r) => order.retailer_id == r,
        Scope::Vendor(_) => false,
    }
}

/// Applies `action` to order `id` and returns the order as it now is.
/// `audit` (the caller's entry) is completed with the change and written in the same
/// transaction. A retailer may cancel only before dispatch. An order outside `scope` (a
/// retailer's: its own orders) is `NotFound`, judged on the row read under the lock.
#[tracing::instrument(skip(app, actor, reason, audit), fields(order_id = %id))]
#[allow(clippy::too_many_arguments)]
pub async fn apply(
    app: &App,
    scope: Scope,
    id: uuid::Uuid,
    action: Action,
    actor: &Actor,
    reason: Option<&str>,
    corrected_lines: Option<&[LineInput]>,
    audit: Option<Entry>,
) -> Result<OrderRow, ActionError> {
    let reason = checked_reason(action, reason)?;
    if corrected_lines.is_some() && action != Action::Approve {
        return Err(ActionError::field(
            "lines",
            "corrected lines go with an approval",
        ));
    }
    // Corrections are checked like an intake before anything is locked.
    let corrected = match corrected_lines {
        Some(lines) => Some(app.intake().check_lines(lines).await?),
        None => None,
    };
    let mut tx = app.db().begin().await?;
    let mut order = repo::find_for_update(&mut tx, id)
        .await?
        .filter(|o| in_scope(scope, o))
        .ok_or(ActionError::NotFound)?;
    let from = order.status();
    let to = match action {
        Action::Approve if from != OrderStatus::OnHold => {
            return Err(ActionError::Illegal(format!(
                "only on_hold orders can be approved; this order is {}",
                from.as_str()
            )));
        }
        Action::Approve => match order.held_from.as_deref().and_then(OrderStatus::parse) {
            // Held when a part given back after the accept found no vendor: routing offers
            // the part again, and the order follows its parts from `routed`.
            Some(OrderStatus::Accepted) => OrderStatus::Routed,
            Some(held_from) => held_from,
            None => OrderStatus::Validated,
        },
        Action::Reject => OrderStatus::Rejected,
        Action::Cancel
            if actor.role == "retailer"
                && (matches!(
                    from,
                    OrderStatus::Dispatched | OrderStatus::Delivered | OrderStatus::Completed
                ) || order.held_from.as_deref() == Some(OrderStatus::Delivered.as_str())) =>
        {
            return Err(ActionError::Illegal(format!(
                "a retailer can cancel only before dispatch; this order is {}",
                from.as_str()
            )));
        }
        Action::Cancel => OrderStatus::Cancelled,
        Action::Confirm | Action::ReportIssue => {
            if let Some(refusal) = not_delivered(action, &order) {
                return Err(refusal);
            }
            if action == Action::Confirm {
                OrderStatus::Completed
            } else {
                OrderStatus::OnHold
            }
        }
    };
    if corrected.is_some() && to != OrderStatus::Received {
        return Err(ActionError::field(
            "lines",
            "lines can be corrected only on an order held before validation",
        ));
    }
    let mut detail = settle_credit(&mut tx, &order, action, actor).await?;
    if matches!(action, Action::Reject | Action::Cancel) {
        // Parts not yet delivered are withdrawn: open offers closed, reserved stock back.
        let released = cancel_parts(&mut tx, order.id, app.clock().now_ms()).await?;
        detail = Some(merge(detail, released));
    }
    let (reason, detail) = match action {
        // The hold's reason code is fixed; the retailer's words go in the detail.
        Action::ReportIssue => (
            "retailer_issue",
            Some(merge(detail, serde_json::json!({ "issue": reason }))),
        ),
        // A retailer's own cancellation without words: a code its message writes out.
        Action::Cancel if reason.is_none() && actor.role == "retailer" => {
            ("retailer_cancelled", detail)
        }
        _ => (reason.unwrap_or(action.verb()), detail),
    };
    match transition::apply(&mut tx, &mut order, to, actor, Some(reason), detail).await? {
        TransitionResult::Done => {}
        TransitionResult::Illegal | TransitionResult::Stale => {
            return Err(ActionError::Illegal(format!(
                "an order that is {} cannot be {}",
                from.as_str(),
                action.verb()
            )));
        }
    }
    if let Some(lines) = corrected {
        let rows: Vec<_> = lines.into_iter().map(CheckedLine::into_row).collect();
        repo::replace_lines(&mut tx, &order, &rows).await?;
    } else if to == OrderStatus::Received && repo::lines_tx(&mut tx, &order).await?.is_empty() {
        return Err(ActionError::field(
            "lines",
            "nothing was understood from this order's text; approve it with lines",
        ));
    }
    if action == Action::Approve {
        continue_after(&mut tx, &order).await?;
    }
    if let Some(entry) = audit {
        let entry = entry
            .action(audit_verb(action))
            .on("order", order.id)
            .summary(serde_json::json!({
            "from": from.as_str(), "to": to.as_str(), "reason": reason }));
        audit::record_tx(&mut tx, &entry).await?;
    }
    tx.commit().await?;
    Ok(order)
}
