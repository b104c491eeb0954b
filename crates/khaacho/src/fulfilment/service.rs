//! What happens to vendor parts: a vendor (or an operator for it) accepts, rejects,
//! dispatches and delivers; a rejected or expired offer moves to the next vendor; an order's
//! cancellation withdraws its parts; and the order follows its slowest part.
//!
//! Every action locks the order first, then its parts (the same order the routing job and
//! the expiry sweep lock in), so concurrent actions on one order queue instead of racing:
//! of twenty concurrent accepts of one offer exactly one finds it still `offered`. Stock is
//! taken from the vendor's offer row with one conditional UPDATE per product, in product
//! order, so concurrent accepts of different orders never drive it below zero.

use serde_json::json;
use uuid::Uuid;

use super::facts::Market;
use super::repo::{self, PartLineRow, PartOfferRow, PartRow, PartStatus, Workloads};
use crate::app::App;
use crate::base::alerts::{self, NewAlert};
use crate::base::audit::{self, Entry};
use crate::base::db::{Reader, Tx};
use crate::base::domain::{VAT_PERCENT, line_amount, vat};
use crate::base::time::fmt_time;
use crate::base::wire::error::FieldError;
use crate::catalog::repo as catalog;
use crate::credit::ledger::{self, LedgerError};
use crate::orders::model::{Actor, LineRow, OrderRow, OrderStatus, PaymentMode};
use crate::orders::repo as orders;
use crate::orders::transition::{self, TransitionResult};

/// Why a part action was refused.
#[derive(Debug, thiserror::Error)]
pub enum FulfilmentError {
    /// No such part, or not the caller's.
    #[error("fulfilment not found")]
    NotFound,
    /// The request is invalid; every problem is listed by field.
    #[error("invalid request")]
    Invalid(Vec<FieldError>),
    /// The part's state does not allow it; the message names what is allowed.
    #[error("{0}")]
    Illegal(String),
    /// The vendor's stock no longer covers a line.
    #[error("{0}")]
    OutOfStock(String),
    /// The credit ledger refused the posting.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The vendors a rejected part could move to kept filling up under concurrent routing
    /// (see [`repo::Workloads::write`]); asking again is safe.
    #[error("the vendors this part could go to filled up meanwhile; try again")]
    Overbooked,
    /// The database failed.
    #[error(transparent)]
    Storage(#[from] sqlx::Error),
}

/// What a vendor (or an operator for it) does with a part.
#[derive(Clone, Debug)]
pub enum PartAction {
    /// Take the offer: stock is reserved.
    Accept,
    /// Refuse the offer: the part moves to the next vendor.
    Reject,
    /// Give back an accepted part not yet dispatched (a reason is required): its stock goes
    /// back and the part moves to the next vendor, as a rejection does; it counts against
    /// the vendor's cancellation rate.
    Cancel,
    /// The goods left.
    Dispatch,
    /// The goods arrived: delivered quantities per line (`line_no`, base milli-units); lines
    /// not named were delivered in full.
    Deliver(Vec<(i32, i64)>),
}

impl PartAction {
    pub(super) fn name(&self) -> &'static str {
        match self {
            PartAction::Accept => "accept",
            PartAction::Reject => "reject",
            PartAction::Cancel => "cancel",
            PartAction::Dispatch => "dispatch",
            PartAction::Deliver(_) => "deliver",
        }
    }

    /// The order event's reason when the actor gave none.
    pub(super) fn done(&self) -> &'static str {
        match self {
            PartAction::Accept => "accepted by the vendor",
            PartAction::Reject => "rejected by the vendor",
            PartAction::Cancel => "cancelled by the vendor",
            PartAction::Dispatch => "dispatched",
            PartAction::Deliver(_) => "delivered",
        }
    }
}

/// The actions a part in `status` allows.
pub fn allowed(status: PartStatus) -> &'static [&'static str] {
    match status {
        PartStatus::Offered => &["accept", "reject"],
        PartStatus::Accepted => &["dispatch", "cancel"],
        PartStatus::Dispatched => &["deliver"],
        PartStatus::Unassigned | PartStatus::Delivered | PartStatus::Cancelled => &[],
    }
}

/// Who acts on a part.
pub struct Acting<'a> {
    /// The vendor acting for itself; `None` for staff.
    pub vendor: Option<Uuid>,
    /// For the order's history.
    pub actor: &'a Actor,
    /// Why (required of staff, and of a rejection).
    pub reason: Option<&'a str>,
    /// The audit entry of a staff member acting for the vendor: completed with the part's
    /// new status and the reason, and written in the action's transaction (an action that
    /// takes effect is never left unaudited, and a refused one writes nothing).
    pub audit: Option<Entry>,
}

/// A part as an action left it, with its lines.
pub struct Acted {
    /// The part.
    pub part: PartRow,
    /// Its lines (reserved and delivered quantities as the action wrote them).
    pub lines: Vec<PartLineRow>,
    /// Its offers when the writer read them (a batch reads all its parts' offers in one
    /// statement); `None`: the caller reads them if it shows them.
    pub offers: Option<Vec<PartOfferRow>>,
    /// The shop the part goes to, when the writer read it (a batch reads its parts' shops in
    /// one statement); `None`: the caller reads it if it shows it.
    pub shop: Option<crate::parties::repo::Retailer>,
}

/// How many times a transaction that gives vendors parts decides again after a vendor it
/// chose filled up under a concurrent one ([`repo::Workloads::write`]).
pub(crate) const REDECIDE: usize = 3;

/// Counts a transaction rolled back because a vendor it chose filled up meanwhile.
pub(crate) fn overbooked(vendors: &[Uuid], during: &'static str) {
    metrics::counter!("khaacho_vendor_overbooked_total", "during" => during).increment(1);
    tracing::info!(
        ?vendors,
        during,
        "vendors filled up concurrently; deciding again"
    );
}

/// Applies `action` to `found` (a read of the part: only its id and order are used, the
/// rest is read again under the order's lock) and returns the part as it now is.
#[tracing::instrument(skip(app, found, acting), fields(part = %found.id, action = action.name()))]
pub async fn act(
    app: &App,
    found: &PartRow,
    acting: &Acting<'_>,
    action: PartAction,
) -> Result<Acted, FulfilmentError> {
    for _ in 1..REDECIDE {
        match act_once(app, found, acting, action.clone()).await {
            Err(FulfilmentError::Overbooked) => {}
            done => return done,
        }
    }
    act_once(app, found, acting, action).await
}

async fn act_once(
    app: &App,
    found: &PartRow,
    acting: &Acting<'_>,
    action: PartAction,
) -> Result<Acted, FulfilmentError> {
    let id = found.id;
    let reason = checked_reason(acting, &action)?;
    let mut tx = app.db().begin().await?;
    let mut order = orders::find_for_update(&mut tx, found.order_id)
        .await?
        .ok_or(FulfilmentError::NotFound)?;
    let mut parts = repo::parts_for_update(&mut tx, &[order.id]).await?;
    let i = parts
        .iter()
        .position(|p| p.id == id)
        .ok_or(FulfilmentError::NotFound)?;
    let now = app.clock().now_ms();
    judge(&parts[i], acting.vendor, &action, now)?;
    let mut lines = repo::lines_tx(&mut tx, &[id]).await?;
    let mut load = Workloads::default();
    load.left(&parts[i], &lines);
    let detail;
    match &action {
        PartAction::Accept => {
            let offer = parts[i].offer_id.unwrap_or_default();
            if !repo::close_offer(&mut tx, offer, "accepted", now, reason).await? {
                return Err(illegal(&parts[i], "accept"));
            }
            let vendor = parts[i].vendor_id.unwrap_or_default();
            reserve_stock(&mut tx, vendor, &mut lines, now).await?;
            detail = advance(&mut parts[i], &lines, &action, 0, now);
        }
        PartAction::Reject => {
            let rejected_by = parts[i].vendor_id;
            let offer = parts[i].offer_id.unwrap_or_default();
            if !repo::close_offer(&mut tx, offer, "rejected", now, reason).await? {
                return Err(illegal(&parts[i], "reject"));
            }
            move_on(&mut tx, app, &order, &lines, &mut parts[i], now, "rejected").await?;
            detail = json!({ "fulfilment_id": id, "rejected_by": rejected_by, "reason": reason,
                "now_offered_to": parts[i].vendor_id });
        }
        PartAction::Cancel => {
            let cancelled_by = parts[i].vendor_id;
            let offer = parts[i].offer_id.unwrap_or_default();
            if !repo::cancel_accepted_offer(&mut tx, offer, reason).await? {
                return Err(illegal(&parts[i], "cancel"));
            }
            let vendor = cancelled_by.unwrap_or_default();
            let returned = return_reserved(&mut tx, vendor, lines.iter_mut(), now).await?;
            repo::save_lines(&mut tx, &lines).await?;
            parts[i].accepted_at_ms = None;
            move_on(
                &mut tx,
                app,
                &order,
                &lines,
                &mut parts[i],
                now,
                "cancelled",
            )
            .await?;
            detail = json!({ "fulfilment_id": id, "cancelled_by": cancelled_by, "reason": reason,
                "stock_released": returned, "now_offered_to": parts[i].vendor_id });
        }
        PartAction::Dispatch => detail = advance(&mut parts[i], &lines, &action, 0, now),
        PartAction::Deliver(quantities) => {
            let delivered = delivered_amount(&mut lines, quantities)?;
            repo::save_lines(&mut tx, &lines).await?;
            detail = advance(&mut parts[i], &lines, &action, delivered, now);
        }
    }
    parts[i].updated_at_ms = now;
    repo::save_part(&mut tx, &parts[i]).await?;
    load.entered(&parts[i], &lines);
    let why = reason.unwrap_or(action.done());
    sync_order(&mut tx, &mut order, &parts, acting.actor, why, detail, now).await?;
    if let Some(entry) = &acting.audit {
        let entry = entry
            .clone()
            .on("fulfilment", id)
            .summary(json!({ "status": parts[i].status, "reason": reason }));
        audit::record_tx(&mut tx, &entry).await?;
    }
    let over = load.write(&mut tx).await?;
    if !over.is_empty() {
        // Rolled back: only a rejection or a cancellation gives a vendor a part, and it
        // decides again.
        overbooked(&over, "reassignment");
        return Err(FulfilmentError::Overbooked);
    }
    tx.commit().await?;
    let part = parts.swap_remove(i);
    metrics::counter!("khaacho_fulfilment_actions_total", "action" => action.name()).increment(1);
    Ok(Acted {
        part,
        lines,
        offers: None,
        shop: None,
    })
}

fn invalid(field: &str, message: &str) -> FulfilmentError {
    FulfilmentError::Invalid(vec![FieldError::new(field, message)])
}

pub(super) fn illegal(part: &PartRow, action: &str) -> FulfilmentError {
    let allowed = allowed(part.status());
    let now = if allowed.is_empty() {
        "nothing".to_string()
    } else {
        allowed.join(", ")
    };
    FulfilmentError::Illegal(format!(
        "cannot {action} a fulfilment that is {}; allowed now: {now}",
        part.status
    ))
}

/// The request's reason, trimmed, when the request is well formed: at most 500 characters,
/// required of staff acting for a vendor and of a rejection.
pub(super) fn checked_reason<'a>(
    acting: &Acting<'a>,
    action: &PartAction,
) -> Result<Option<&'a str>, FulfilmentError> {
    let reason = acting.reason.map(str::trim).filter(|r| !r.is_empty());
    if reason.is_some_and(|r| r.chars().count() > 500) {
        return Err(invalid("reason", "reason must be at most 500 characters"));
    }
    if acting.vendor.is_none() && reason.is_none() {
        return Err(invalid(
            "reason",
            "an operator acting for a vendor must give a reason",
        ));
    }
    if matches!(action, PartAction::Reject) && reason.is_none() {
        return Err(invalid("reason", "a rejection needs a reason"));
    }
    if matches!(action, PartAction::Cancel) && reason.is_none() {
        return Err(invalid(
            "reason",
            "say why the accepted part cannot be delivered",
        ));
    }
    Ok(reason)
}

/// Whether `action` may be taken on `part` (read under its order's lock) by `vendor` (`None`
/// for staff) at `now`: the part is that vendor's, in the state the action needs, and an
/// offer is accepted before its deadline.
pub(super) fn judge(
    part: &PartRow,
    vendor: Option<Uuid>,
    action: &PartAction,
    now: i64,
) -> Result<(), FulfilmentError> {
    if vendor.is_some() && part.vendor_id != vendor {
        // Another vendor's part, or one that moved on from this vendor.
        return Err(FulfilmentError::NotFound);
    }
    let wants = match action {
        PartAction::Accept | PartAction::Reject => PartStatus::Offered,
        PartAction::Dispatch | PartAction::Cancel => PartStatus::Accepted,
        PartAction::Deliver(_) => PartStatus::Dispatched,
    };
    if part.status() != wants {
        return Err(illegal(part, action.name()));
    }
    if matches!(action, PartAction::Accept)
        && let Some(deadline) = part.deadline_ms.filter(|d| *d <= now)
    {
        return Err(FulfilmentError::Illegal(format!(
            "the offer expired at {}; it goes to another vendor",
            fmt_time(deadline)
        )));
    }
    Ok(())
}

/// Moves `part` as an accept, a dispatch or a delivery (judged, its stock taken or its
/// `lines` holding the delivered quantities worth `delivered` paisa) and returns the detail
/// of the order's event.
pub(super) fn advance(
    part: &mut PartRow,
    lines: &[PartLineRow],
    action: &PartAction,
    delivered: i64,
    now: i64,
) -> serde_json::Value {
    match action {
        PartAction::Accept => {
            part.status = PartStatus::Accepted.as_str().into();
            part.accepted_at_ms = Some(now);
            part.deadline_ms = None;
            json!({ "fulfilment_id": part.id, "vendor_id": part.vendor_id })
        }
        PartAction::Dispatch => {
            part.status = PartStatus::Dispatched.as_str().into();
            part.dispatched_at_ms = Some(now);
            json!({ "fulfilment_id": part.id })
        }
        PartAction::Deliver(_) => {
            part.status = PartStatus::Delivered.as_str().into();
            part.delivered_at_ms = Some(now);
            part.delivered_paisa = Some(delivered);
            let short: Vec<_> = lines
                .iter()
                .filter(|l| l.delivered_milli.is_some_and(|d| d < l.qty_milli))
                .map(|l| json!({ "line_no": l.line_no, "ordered_milli": l.qty_milli, "delivered_milli": l.delivered_milli }))
                .collect();
            json!({ "fulfilment_id": part.id, "delivered_paisa": delivered, "short": short })
        }
        PartAction::Reject | PartAction::Cancel => {
            unreachable!("a rejection or a cancellation moves the part with `reassign`")
        }
    }
}

/// Gives the stock `lines` (of one part of `vendor`) reserved back to the vendor, in product
/// order as every stock change locks the offer rows, and clears their reservations; returns
/// what went back, for the order's event.
async fn return_reserved<'l>(
    tx: &mut Tx,
    vendor: Uuid,
    lines: impl IntoIterator<Item = &'l mut PartLineRow>,
    now: i64,
) -> Result<Vec<serde_json::Value>, sqlx::Error> {
    let mut mine: Vec<&mut PartLineRow> =
        lines.into_iter().filter(|l| l.reserved_milli > 0).collect();
    mine.sort_by_key(|l| l.product_id);
    let mut released = Vec::with_capacity(mine.len());
    for l in mine {
        catalog::return_stock(tx, vendor, l.product_id, l.reserved_milli, now).await?;
        released.push(json!({ "vendor_id": vendor, "product_id": l.product_id, "qty_milli": l.reserved_milli }));
        l.reserved_milli = 0;
    }
    Ok(released)
}

/// Takes each line's quantity from the vendor's stock (per product, in product order, so
/// concurrent accepts lock the offer rows in one order) and records it on the lines;
/// refuses the whole accept when one product is short.
async fn reserve_stock(
    tx: &mut Tx,
    vendor: Uuid,
    lines: &mut [PartLineRow],
    now: i64,
) -> Result<(), FulfilmentError> {
    let short = catalog::take_stocks(tx, vendor, &stock_wanted(lines), now).await?;
    if let Some(refusal) = out_of_stock(lines, &short) {
        return Err(refusal);
    }
    for l in lines.iter_mut() {
        l.reserved_milli = l.qty_milli;
    }
    repo::save_lines(tx, lines).await?;
    Ok(())
}

/// The quantity of each product `lines` take from their vendor's stock, in product order.
pub(super) fn stock_wanted(lines: &[PartLineRow]) -> Vec<(Uuid, i64)> {
    let mut wants: Vec<(Uuid, i64)> = Vec::with_capacity(lines.len());
    let mut by_product: Vec<&PartLineRow> = lines.iter().collect();
    by_product.sort_by_key(|l| (l.product_id, l.line_no));
    for l in by_product {
        match wants.last_mut() {
            Some((p, q)) if *p == l.product_id => *q += l.qty_milli,
            _ => wants.push((l.product_id, l.qty_milli)),
        }
    }
    wants
}

/// The refusal of an accept whose `short` products the stock no longer covers (naming the
/// first such line), if any.
pub(super) fn out_of_stock(lines: &[PartLineRow], short: &[Uuid]) -> Option<FulfilmentError> {
    let l = lines
        .iter()
        .filter(|l| short.contains(&l.product_id))
        .min_by_key(|l| l.line_no)?;
    Some(FulfilmentError::OutOfStock(format!(
        "stock no longer covers line {} ({} {}); reject the offer instead",
        l.line_no,
        crate::base::domain::milli_to_qty(l.qty_milli),
        l.unit
    )))
}

/// Records the delivered quantities (lines not named: in full) and returns what was handed
/// over at the order's prices, VAT included.
pub(super) fn delivered_amount(
    lines: &mut [PartLineRow],
    quantities: &[(i32, i64)],
) -> Result<i64, FulfilmentError> {
    let mut errors = Vec::new();
    for (k, (line_no, qty)) in quantities.iter().enumerate() {
        let field = format!("lines[{k}].quantity");
        match lines.iter().find(|l| l.line_no == *line_no) {
            None => errors.push(FieldError::new(
                format!("lines[{k}].line_no"),
                format!("line {line_no} is not part of this fulfilment"),
            )),
            Some(_) if *qty < 0 => errors.push(FieldError::new(
                field,
                "a delivered quantity cannot be negative",
            )),
            Some(l) if *qty > l.qty_milli => errors.push(FieldError::new(
                field,
                format!(
                    "delivered {} is more than the {} {} ordered",
                    crate::base::domain::milli_to_qty(*qty),
                    crate::base::domain::milli_to_qty(l.qty_milli),
                    l.unit
                ),
            )),
            Some(_) => {}
        }
    }
    if quantities
        .iter()
        .enumerate()
        .any(|(k, (n, _))| quantities[..k].iter().any(|(m, _)| m == n))
    {
        errors.push(FieldError::new("lines", "a line is named twice"));
    }
    if !errors.is_empty() {
        return Err(FulfilmentError::Invalid(errors));
    }
    let mut total = 0;
    for l in lines.iter_mut() {
        let qty = quantities
            .iter()
            .find(|(n, _)| *n == l.line_no)
            .map_or(l.qty_milli, |(_, q)| *q);
        l.delivered_milli = Some(qty);
        let subtotal = line_amount(l.unit_price_paisa, qty);
        total += subtotal + vat(subtotal, VAT_PERCENT);
    }
    Ok(total)
}

/// [`reassign`] with `order`'s lines read in `tx`: a part its vendor refused or gave back.
async fn move_on(
    tx: &mut Tx,
    app: &App,
    order: &OrderRow,
    part_lines: &[PartLineRow],
    part: &mut PartRow,
    now: i64,
    why: &str,
) -> Result<(), FulfilmentError> {
    let order_lines = orders::lines_tx(tx, order).await?;
    reassign(tx, app, order, &order_lines, part_lines, part, now, why).await
}

/// Moves `part` (whose offer was just rejected, expired or given back; `part_lines` holds
/// its lines) to the best vendor not yet tried, or, after `max_reassignments` moves or when
/// none is left, leaves it unassigned and alerts the operators. Writes the part, its new
/// offer, the decision and the lines' addressee.
#[allow(clippy::too_many_arguments)]
pub(super) async fn reassign(
    tx: &mut Tx,
    app: &App,
    order: &OrderRow,
    order_lines: &[LineRow],
    part_lines: &[PartLineRow],
    part: &mut PartRow,
    now: i64,
    why: &str,
) -> Result<(), FulfilmentError> {
    let part_lines: Vec<i32> = part_lines
        .iter()
        .filter(|l| l.fulfilment_id == part.id)
        .map(|l| l.line_no)
        .collect();
    let lines: Vec<LineRow> = order_lines
        .iter()
        .filter(|l| part_lines.contains(&l.line_no))
        .cloned()
        .collect();
    let settings = &app.settings().fulfilment;
    let next = if part.reassignments >= settings.max_reassignments {
        None
    } else {
        let mut reader = Reader::Tx(&mut *tx);
        let market = Market::load(&mut reader, app.volumes(), &[(order, &lines)], now).await?;
        market.facts(order, &lines).and_then(|f| {
            khaacho_vendors::next_vendor(
                &f.retailer,
                &f.lines,
                &f.vendors,
                &part.tried.0,
                &app.settings().routing,
            )
        })
    };
    let from = part.vendor_id;
    match next {
        Some(score) => {
            let offer = new_offer(part, score.vendor_id, now, settings.offer_timeout_minutes);
            repo::insert_offer(tx, &offer).await?;
            part.vendor_id = Some(score.vendor_id);
            part.offer_id = Some(offer.id);
            part.deadline_ms = Some(offer.deadline_ms);
            part.reassignments += 1;
            part.tried.0.push(score.vendor_id);
            part.status = PartStatus::Offered.as_str().into();
            orders::address_lines(
                tx,
                (order.id, order.created_at_ms),
                &part_lines,
                Some(score.vendor_id),
            )
            .await?;
            let reason = format!(
                "offer {why} by the previous vendor; offered to the best vendor not yet asked (score {})",
                score.total
            );
            repo::insert_decisions(
                tx,
                &[repo::NewDecision {
                    order_id: order.id,
                    fulfilment_id: Some(part.id),
                    outcome: "reassigned",
                    reason,
                    decision: repo::decision_json(&json!({ "from_vendor_id": from,
                        "to_vendor_id": score.vendor_id, "score": score.total,
                        "components": score.components, "tried": part.tried.0 })),
                    at_ms: now,
                }],
            )
            .await?;
            // An event on the order's timeline, which also tells the new vendor of its offer.
            // No vendor ids in it: every vendor of the order may read its events.
            transition::note(
                tx,
                order,
                &Actor::system(),
                "offer_reassigned",
                Some(json!({ "fulfilment_id": part.id })),
            )
            .await?;
        }
        None => {
            part.vendor_id = None;
            part.offer_id = None;
            part.deadline_ms = None;
            part.status = PartStatus::Unassigned.as_str().into();
            orders::address_lines(tx, (order.id, order.created_at_ms), &part_lines, None).await?;
            let reason = if part.reassignments >= settings.max_reassignments {
                format!(
                    "offer {why}; the part was already reassigned {} times",
                    part.reassignments
                )
            } else {
                format!("offer {why}; no other vendor may supply these lines")
            };
            repo::insert_decisions(
                tx,
                &[repo::NewDecision {
                    order_id: order.id,
                    fulfilment_id: Some(part.id),
                    outcome: "no_vendor",
                    reason: reason.clone(),
                    decision: repo::decision_json(
                        &json!({ "tried": part.tried.0, "lines": part_lines }),
                    ),
                    at_ms: now,
                }],
            )
            .await?;
            alert_no_vendor(
                tx,
                order,
                &reason,
                json!({ "fulfilment_id": part.id, "lines": part_lines }),
                now,
            )
            .await?;
        }
    }
    part.updated_at_ms = now;
    repo::save_part(tx, part).await?;
    Ok(())
}

/// Raises the operators' alert for an order no vendor will take.
pub(super) async fn alert_no_vendor(
    tx: &mut Tx,
    order: &OrderRow,
    reason: &str,
    detail: serde_json::Value,
    now: i64,
) -> Result<(), sqlx::Error> {
    alerts::raise(
        tx,
        &NewAlert {
            kind: "vendor_unavailable",
            severity: "warning",
            subject: "order",
            subject_id: order.id,
            message: format!("no vendor for order {}: {reason}", order.id),
            detail,
            at_ms: now,
        },
    )
    .await?;
    Ok(())
}

/// A new open offer of `part` to `vendor`.
pub(super) fn new_offer(part: &PartRow, vendor: Uuid, now: i64, minutes: i64) -> PartOfferRow {
    PartOfferRow {
        id: Uuid::now_v7(),
        fulfilment_id: part.id,
        order_id: part.order_id,
        vendor_id: vendor,
        status: "offered".into(),
        offered_at_ms: now,
        deadline_ms: now + minutes * 60_000,
        responded_at_ms: None,
        reason: None,
    }
}

/// The order status its parts call for: the slowest live part's, or `on_hold` when a part
/// has no vendor. `None` when no part is live (all cancelled).
pub fn derived_status(parts: &[PartRow]) -> Option<OrderStatus> {
    parts
        .iter()
        .map(PartRow::status)
        .filter(|s| *s != PartStatus::Cancelled)
        .min()
        .map(|s| match s {
            PartStatus::Unassigned => OrderStatus::OnHold,
            PartStatus::Offered => OrderStatus::Routed,
            PartStatus::Accepted => OrderStatus::Accepted,
            PartStatus::Dispatched => OrderStatus::Dispatched,
            PartStatus::Delivered | PartStatus::Cancelled => OrderStatus::Delivered,
        })
}

/// Moves `order` to the status its `parts` call for, when that differs. An order an
/// operator holds stays held (the operator decides). Reaching `delivered` posts the credit
/// hold at the delivered amount (or releases it when nothing was delivered).
pub(super) async fn sync_order(
    tx: &mut Tx,
    order: &mut OrderRow,
    parts: &[PartRow],
    actor: &Actor,
    reason: &str,
    detail: serde_json::Value,
    now: i64,
) -> Result<(), FulfilmentError> {
    let Some(sync) = follow_parts(tx, order, parts, reason, detail, now).await? else {
        return Ok(());
    };
    let actor = if sync.by_system {
        &Actor::system()
    } else {
        actor
    };
    let (to, reason, detail) = (sync.to, Some(sync.reason), Some(sync.detail));
    match transition::apply(tx, order, to, actor, reason, detail).await? {
        TransitionResult::Done => Ok(()),
        other => Err(FulfilmentError::Illegal(format!(
            "the order changed while its fulfilment did ({other:?}); try again"
        ))),
    }
}

/// The change an order's parts call for (see [`sync_order`]).
pub(super) struct Follow<'a> {
    /// The new status.
    pub to: OrderStatus,
    /// The event's reason.
    pub reason: &'a str,
    /// Made by the system (a part without a vendor holds the order), not the actor.
    pub by_system: bool,
    /// The event's detail (with the delivered and posted amounts at `delivered`).
    pub detail: serde_json::Value,
    /// A credit order reaching `delivered`: the order, its retailer and the amount
    /// delivered, to post (0: the hold is released) by [`settle`].
    pub post: Option<(Uuid, Uuid, i64)>,
}

/// What `order` must become for its `parts` (`None`: nothing), with the credit posting that
/// reaching `delivered` makes, written in `tx`; the caller applies the transition.
pub(super) async fn follow_parts<'a>(
    tx: &mut Tx,
    order: &OrderRow,
    parts: &[PartRow],
    reason: &'a str,
    detail: serde_json::Value,
    now: i64,
) -> Result<Option<Follow<'a>>, FulfilmentError> {
    let Some(mut follow) = follow(order, parts, reason, detail) else {
        return Ok(None);
    };
    settle(tx, &mut [&mut follow], now).await?;
    Ok(Some(follow))
}

/// [`follow_parts`] without the posting: what `order` must become for its `parts`, and
/// what [`settle`] must post for it.
pub(super) fn follow<'a>(
    order: &OrderRow,
    parts: &[PartRow],
    reason: &'a str,
    detail: serde_json::Value,
) -> Option<Follow<'a>> {
    let target = derived_status(parts)?;
    let from = order.status();
    if from == target || from == OrderStatus::OnHold || from.is_terminal() {
        return None;
    }
    let mut detail = detail;
    let (reason, by_system) = if target == OrderStatus::OnHold {
        ("vendor_unavailable", true)
    } else {
        (reason, false)
    };
    let mut post = None;
    if target == OrderStatus::Delivered {
        let delivered: i64 = parts.iter().filter_map(|p| p.delivered_paisa).sum();
        detail["delivered_paisa"] = json!(delivered);
        if order.payment_mode == PaymentMode::Credit.as_str() {
            post = Some((order.id, order.retailer_id, delivered));
        }
    }
    Some(Follow {
        to: target,
        reason,
        by_system,
        detail,
        post,
    })
}

/// Writes the credit postings `follows` call for in `tx`: the delivered orders' holds posted
/// together ([`ledger::post_deliveries`], in the order given: the caller's retailer order), a
/// hold of nothing delivered released; each posting's amount and due date go in its event's
/// detail. When holds are released as well, every account concerned is locked first, at
/// once in retailer order, so this transaction takes them in the order every other does.
pub(super) async fn settle(
    tx: &mut Tx,
    follows: &mut [&mut Follow<'_>],
    now: i64,
) -> Result<(), FulfilmentError> {
    let (voids, posts): (Vec<_>, Vec<_>) = follows
        .iter()
        .filter_map(|f| f.post)
        .partition(|&(_, _, delivered)| delivered <= 0);
    if !voids.is_empty() && (voids.len() > 1 || !posts.is_empty()) {
        let mut retailers: Vec<Uuid> = voids.iter().chain(&posts).map(|p| p.1).collect();
        retailers.sort_unstable();
        retailers.dedup();
        crate::credit::repo::accounts_for_update(tx, &retailers).await?;
    }
    for &(order, _, _) in &voids {
        ledger::void(tx, order).await?;
    }
    let posting: Vec<(Uuid, i64)> = posts.iter().map(|&(o, _, d)| (o, d)).collect();
    let mut posted = ledger::post_deliveries(tx, &posting, now)
        .await?
        .into_iter();
    for f in follows.iter_mut() {
        match f.post {
            Some((_, _, delivered)) if delivered <= 0 => f.detail["posted_paisa"] = json!(0),
            Some(_) => {
                if let Some(p) = posted.next() {
                    f.detail["posted_paisa"] = json!(p.entry.amount_paisa);
                    f.detail["due_at_ms"] = json!(p.entry.due_at_ms);
                }
            }
            None => {}
        }
    }
    Ok(())
}

/// Withdraws `order`'s parts that are not yet delivered (the order is being cancelled or
/// rejected): open offers are closed, reserved stock goes back to the vendors, the parts
/// leave their vendors' workloads. Returns what was released, for the order's event.
pub async fn cancel_parts(
    tx: &mut Tx,
    order: Uuid,
    now: i64,
) -> Result<serde_json::Value, sqlx::Error> {
    let mut parts = repo::parts_for_update(tx, &[order]).await?;
    let ids: Vec<Uuid> = parts.iter().map(|p| p.id).collect();
    let mut lines = repo::lines_tx(tx, &ids).await?;
    let mut released = Vec::new();
    let mut freed = Vec::new();
    let mut cancelled = 0;
    let mut load = Workloads::default();
    for p in parts.iter_mut() {
        let status = p.status();
        if matches!(status, PartStatus::Delivered | PartStatus::Cancelled) {
            continue;
        }
        if let (PartStatus::Offered, Some(offer)) = (status, p.offer_id) {
            repo::close_offer(tx, offer, "cancelled", now, Some("order withdrawn")).await?;
        }
        if let Some(vendor) = p.vendor_id {
            let mine: Vec<&mut PartLineRow> = lines
                .iter_mut()
                .filter(|l| l.fulfilment_id == p.id && l.reserved_milli > 0)
                .collect();
            freed.extend(mine.iter().map(|l| (l.fulfilment_id, l.line_no)));
            released.extend(return_reserved(tx, vendor, mine, now).await?);
        }
        load.left(p, &lines);
        p.status = PartStatus::Cancelled.as_str().into();
        p.deadline_ms = None;
        p.updated_at_ms = now;
        repo::save_part(tx, p).await?;
        cancelled += 1;
    }
    let freed: Vec<PartLineRow> = lines
        .into_iter()
        .filter(|l| freed.contains(&(l.fulfilment_id, l.line_no)))
        .collect();
    repo::save_lines(tx, &freed).await?;
    // The vendors' counts last: the caller locks no stock or account after this. Withdrawn
    // parts give no vendor anything, so none can be over a limit for it.
    load.write(tx).await?;
    Ok(json!({ "fulfilments_cancelled": cancelled, "stock_released": released }))
}

/// Expires the offers past their deadline of up to `limit` orders and moves each part to
/// the next vendor (or leaves it unassigned, holding its order). One transaction per order.
/// Returns how many parts moved.
pub async fn expire_offers(app: &App, now: i64, limit: i64) -> anyhow::Result<usize> {
    let orders_due = repo::orders_with_expired_offers(app.db(), now, limit).await?;
    let mut moved = 0;
    for order_id in orders_due {
        let mut tx = app.db().begin().await?;
        let Some(mut order) = orders::find_for_update(&mut tx, order_id).await? else {
            continue;
        };
        let mut parts = repo::parts_for_update(&mut tx, &[order_id]).await?;
        let order_lines = orders::lines_tx(&mut tx, &order).await?;
        let is_due = |p: &PartRow| {
            p.status() == PartStatus::Offered && p.deadline_ms.is_some_and(|d| d <= now)
        };
        let due: Vec<Uuid> = parts.iter().filter(|p| is_due(p)).map(|p| p.id).collect();
        let part_lines = repo::lines_tx(&mut tx, &due).await?;
        let mut expired = Vec::new();
        let mut load = Workloads::default();
        for p in parts.iter_mut() {
            if !is_due(p) {
                continue;
            }
            let offer = p.offer_id.unwrap_or_default();
            repo::close_offer(&mut tx, offer, "expired", now, None).await?;
            expired.push(json!({ "fulfilment_id": p.id, "vendor_id": p.vendor_id }));
            load.left(p, &part_lines);
            reassign(
                &mut tx,
                app,
                &order,
                &order_lines,
                &part_lines,
                p,
                now,
                "expired",
            )
            .await?;
            load.entered(p, &part_lines);
            moved += 1;
        }
        let detail = json!({ "expired": expired });
        sync_order(
            &mut tx,
            &mut order,
            &parts,
            &Actor::system(),
            "offer_expired",
            detail,
            now,
        )
        .await?;
        let over = load.write(&mut tx).await?;
        if !over.is_empty() {
            // Rolled back; the next sweep, a minute on, moves these parts on the new counts.
            overbooked(&over, "expiry");
            moved -= expired.len();
            continue;
        }
        tx.commit().await?;
    }
    if moved > 0 {
        metrics::counter!("khaacho_offers_expired_total").increment(moved as u64);
    }
    Ok(moved)
}
