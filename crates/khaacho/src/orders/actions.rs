//! People acting on an order: an operator approves or rejects a held order; an order is
//! cancelled. Each is one transaction through the state machine.

use super::intake::{CheckedLine, IntakeError, LineInput};
use super::model::{Actor, OrderRow, OrderStatus};
use super::pipeline::continue_after;
use super::repo;
use super::transition::{self, TransitionResult};
use crate::app::App;
use crate::base::audit::{self, Entry};
use crate::base::wire::error::FieldError;

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
}

impl Action {
    fn verb(self) -> &'static str {
        match self {
            Action::Approve => "approved",
            Action::Reject => "rejected",
            Action::Cancel => "cancelled",
        }
    }
}

/// Applies `action` to order `id` and returns the order as it now is.
/// `audit` (the caller's entry) is completed with the change and written in the same
/// transaction. A retailer may cancel only before dispatch.
#[tracing::instrument(skip(app, actor, reason, audit), fields(order_id = %id))]
pub async fn apply(
    app: &App,
    id: uuid::Uuid,
    action: Action,
    actor: &Actor,
    reason: Option<&str>,
    corrected_lines: Option<&[LineInput]>,
    audit: Option<Entry>,
) -> Result<OrderRow, ActionError> {
    let reason = reason.map(str::trim).filter(|r| !r.is_empty());
    if action == Action::Reject && reason.is_none() {
        return Err(ActionError::field("reason", "a rejection needs a reason"));
    }
    if reason.is_some_and(|r| r.chars().count() > 500) {
        return Err(ActionError::field(
            "reason",
            "reason must be at most 500 characters",
        ));
    }
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
        .ok_or(ActionError::NotFound)?;
    let from = order.status();
    let to = match action {
        Action::Approve if from != OrderStatus::OnHold => {
            return Err(ActionError::Illegal(format!(
                "only on_hold orders can be approved; this order is {}",
                from.as_str()
            )));
        }
        Action::Approve => order
            .held_from
            .as_deref()
            .and_then(OrderStatus::parse)
            .unwrap_or(OrderStatus::Validated),
        Action::Reject => OrderStatus::Rejected,
        Action::Cancel
            if actor.role == "retailer"
                && matches!(
                    from,
                    OrderStatus::Dispatched | OrderStatus::Delivered | OrderStatus::Completed
                ) =>
        {
            return Err(ActionError::Illegal(format!(
                "a retailer can cancel only before dispatch; this order is {}",
                from.as_str()
            )));
        }
        Action::Cancel => OrderStatus::Cancelled,
    };
    if corrected.is_some() && to != OrderStatus::Received {
        return Err(ActionError::field(
            "lines",
            "lines can be corrected only on an order held before validation",
        ));
    }
    let reason = reason.unwrap_or(action.verb());
    match transition::apply(&mut tx, &mut order, to, actor, Some(reason), None).await? {
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
        let verb = match action {
            Action::Approve => "order.approve",
            Action::Reject => "order.reject",
            Action::Cancel => "order.cancel",
        };
        let entry = entry
            .action(verb)
            .on("order", order.id)
            .summary(serde_json::json!({
            "from": from.as_str(), "to": to.as_str(), "reason": reason }));
        audit::record_tx(&mut tx, &entry).await?;
    }
    tx.commit().await?;
    Ok(order)
}
