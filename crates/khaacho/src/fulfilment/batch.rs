//! The vendors' accept, dispatch and deliver, many per transaction: the part actions' group
//! commit (`base/group_commit.rs`, as the order intake's).
//!
//! One action alone ([`service::act`]) is a transaction of about twelve statements: lock the
//! order, read its parts and the part's lines, close the offer, take the stock, save the
//! lines and the part, the status UPDATE, the event, the `order.changed` job, the commit. At
//! a few hundred orders a second, with four party actions per order, those were most of the
//! database's work. Here the actions that arrive while a batch commits form the next batch,
//! which does the same work with one statement per step for all of them:
//!
//! 0. find the parts (one read for the batch; a part not found or not the acting vendor's is
//!    `NotFound`, so the handler reads nothing first);
//! 1. lock the batch's orders in id order, then their parts, and read the acted parts' lines;
//!    an order another transaction holds (the other batch in flight, a confirmation) is
//!    skipped, not waited for: its action runs alone after the batch;
//! 2. judge every action in memory with the rules `act` uses ([`service::judge`], the
//!    delivered quantities): a refused one is answered with its refusal and touches nothing;
//! 3. judge the accepts' stock on the stock as committed (one read), in vendor and part
//!    order: an accept it no longer covers is refused alone (409) and takes nothing;
//! 4. close the accepted offers, save the lines and the parts, post the credit of the orders
//!    that reach `delivered` together ([`crate::credit::ledger::post_deliveries`]: five
//!    statements for the batch; the accounts locked at once in retailer order, as the
//!    pipeline's credit step locks them), and change the orders with one
//!    [`transition::apply_each`] (one UPDATE, one event INSERT, one `order.changed` for the
//!    batch);
//! 5. read the acted parts' offers and shops (one read of each, for the answers);
//! 6. take the accepts' stock, last, so the offer rows (every accept of a vendor's product
//!    wants the same one) are held only until the commit: one statement for the batch, which
//!    locks the rows in vendor and product order (the order every stock taker uses, so
//!    concurrent batches never wait in a cycle; and after the accounts, as a cancellation
//!    takes them) and takes what the batch's accepts want of each.
//!    Stock another transaction took since step 3 sends the batch back to one by one (below).
//!    Commit, and answer each request.
//!
//! A second action on an order already in the batch (two vendors of a split order, twenty
//! concurrent accepts of one offer) waits for the batch's commit and then runs alone through
//! `act`, which is also the path of a batch of one. Whatever the batch cannot carry together
//! — a ledger refusal, a storage error, an order changed underneath — rolls it back and runs
//! its actions alone, side by side, as before the batching
//! (`khaacho_part_action_batches_split_total{why}` counts it); the outcome a caller sees is
//! the same either way. A rejection (it re-routes the part), a staff member acting for a
//! vendor (audited) and the chat's ACCEPT go through `act` directly.

use std::collections::{HashMap, HashSet};

use uuid::Uuid;

use super::repo::{self, PartLineRow, PartRow, Workloads};
use super::service::{self, Acted, Acting, Follow, FulfilmentError, PartAction};
use crate::app::App;
use crate::base::db::Reader;
use crate::base::group_commit::BatchWriter;
use crate::catalog::repo as catalog;
use crate::orders::model::{Actor, OrderRow};
use crate::orders::repo as orders;
use crate::orders::transition::{self, Change, TransitionResult};
use crate::parties::repo as parties;

/// Whether `action` as `acting` goes through the part actions' group commit: a vendor's own
/// accept, dispatch or delivery. Anything else (a rejection, staff acting for a vendor) is
/// applied alone by [`service::act`].
pub fn batched(acting: &Acting<'_>, action: &PartAction) -> bool {
    acting.vendor.is_some()
        && acting.audit.is_none()
        && matches!(
            action,
            PartAction::Accept | PartAction::Dispatch | PartAction::Deliver(_)
        )
}

/// Applies `vendor`'s `action` on its part `part` as [`service::act`] does, through the part
/// actions' group commit (see [`batched`]). The writer finds the part (one statement for the
/// batch): a part that does not exist or is not `vendor`'s is `NotFound`, as a vendor acting
/// on another's part learns nothing about it.
pub async fn submit(
    app: &App,
    part: Uuid,
    vendor: Uuid,
    actor: &Actor,
    reason: Option<&str>,
    action: PartAction,
) -> Result<Acted, FulfilmentError> {
    let request = PartRequest::new(
        app.clone(),
        part,
        vendor,
        actor.clone(),
        reason.map(str::to_string),
        action,
    );
    app.part_actions().write(request).await?
}

/// One vendor's action on one of its parts, waiting for its batch.
pub struct PartRequest {
    /// The application (each request carries it, so the writer holds none: the writer's
    /// task ends with the last `App`).
    app: App,
    /// The part acted on.
    part: Uuid,
    /// The vendor acting.
    vendor: Uuid,
    /// For the order's history.
    actor: Actor,
    /// The vendor's words, if any.
    reason: Option<String>,
    /// Accept, dispatch or deliver.
    action: PartAction,
}

impl PartRequest {
    /// `vendor`'s `action` on its part `part`, as `actor`.
    pub fn new(
        app: App,
        part: Uuid,
        vendor: Uuid,
        actor: Actor,
        reason: Option<String>,
        action: PartAction,
    ) -> Self {
        Self {
            app,
            part,
            vendor,
            actor,
            reason,
            action,
        }
    }

    fn acting(&self) -> Acting<'_> {
        Acting {
            vendor: Some(self.vendor),
            actor: &self.actor,
            reason: self.reason.as_deref(),
            audit: None,
        }
    }
}

/// Writes batches of [`PartRequest`]s (see the module's documentation).
pub struct PartActionWriter {
    /// On PostgreSQL (row locks: batches may overlap) rather than SQLite (one writer).
    pub postgres: bool,
}

impl BatchWriter for PartActionWriter {
    type Item = PartRequest;
    type Output = Result<Acted, FulfilmentError>;

    async fn write(&self, items: &[PartRequest]) -> Result<Vec<Self::Output>, sqlx::Error> {
        // The parts as last committed, in one statement (their order never changes; the rest
        // is read again under the order's lock). Not found, or not the acting vendor's:
        // `NotFound`, whatever the action.
        let db = items[0].app.db();
        let rows = if let [one] = items {
            repo::find(db, one.part).await?.into_iter().collect()
        } else {
            let ids: Vec<Uuid> = items.iter().map(|r| r.part).collect();
            repo::find_many(db, &ids).await?
        };
        let found: Vec<Option<PartRow>> = items
            .iter()
            .map(|r| {
                rows.iter()
                    .find(|p| p.id == r.part && p.vendor_id == Some(r.vendor))
                    .cloned()
            })
            .collect();
        let mut out: Vec<Option<Self::Output>> = found
            .iter()
            .map(|f| f.is_none().then_some(Err(FulfilmentError::NotFound)))
            .collect();
        let known: Vec<(usize, &PartRow)> = found
            .iter()
            .enumerate()
            .filter_map(|(k, f)| f.as_ref().map(|p| (k, p)))
            .collect();
        match known[..] {
            [] => return Ok(finish(out)),
            [(k, p)] => {
                out[k] = Some(alone(&items[k], p).await);
                return Ok(finish(out));
            }
            _ => {}
        }
        // The first action on each order goes in the batch; a later one on the same order
        // (two vendors of a split order, twenty accepts of one offer) waits for the batch's
        // commit and then runs alone, in arrival order, so it sees the first one's effect.
        let mut orders_named = HashSet::new();
        let (first, later): (Vec<_>, Vec<_>) = known
            .into_iter()
            .partition(|(_, p)| orders_named.insert(p.order_id));
        let batch: Vec<&PartRequest> = first.iter().map(|&(k, _)| &items[k]).collect();
        let parts: Vec<&PartRow> = first.iter().map(|&(_, p)| p).collect();
        match together(&batch, &parts).await {
            Ok(answers) => {
                let mut busy = Vec::new();
                for ((k, p), answer) in first.into_iter().zip(answers) {
                    match answer {
                        Some(answer) => out[k] = Some(answer),
                        None => busy.push((k, p)),
                    }
                }
                // Their orders were held by another transaction (the other batch in flight,
                // a retailer's confirmation): each alone now, side by side (one order each),
                // waiting for its order's lock as `act` does.
                if !busy.is_empty() {
                    metrics::counter!("khaacho_part_actions_left_for_after_batch_total")
                        .increment(busy.len() as u64);
                }
                let answers =
                    futures::future::join_all(busy.iter().map(|&(k, p)| alone(&items[k], p))).await;
                for ((k, _), answer) in busy.into_iter().zip(answers) {
                    out[k] = Some(answer);
                }
            }
            Err(why) => {
                metrics::counter!("khaacho_part_action_batches_split_total", "why" => why.label())
                    .increment(1);
                tracing::debug!(batch = batch.len(), %why, "part actions written one by one");
                // As before the batching: each action in its own transaction, side by side.
                let answers =
                    futures::future::join_all(batch.iter().zip(&parts).map(|(r, p)| alone(r, p)))
                        .await;
                for ((k, _), answer) in first.into_iter().zip(answers) {
                    out[k] = Some(answer);
                }
            }
        }
        for (k, p) in later {
            out[k] = Some(alone(&items[k], p).await);
        }
        Ok(finish(out))
    }

    fn max_in_flight(&self) -> usize {
        // Two batches side by side on PostgreSQL: an action waits for the batch before its
        // own, and a batch is a dozen statements and a commit long.
        // They lock in one order (orders by id, their parts, offer rows by vendor and
        // product, accounts by retailer), so they queue on a shared row, never deadlock.
        if self.postgres { 2 } else { 1 }
    }

    fn max_batch(&self) -> usize {
        // Short enough that a burst of actions is answered in several commits rather than
        // all after one long one.
        64
    }

    fn name(&self) -> &'static str {
        "part_actions"
    }
}

/// One action in its own transaction, on the part as `found`.
async fn alone(r: &PartRequest, found: &PartRow) -> Result<Acted, FulfilmentError> {
    service::act(&r.app, found, &r.acting(), r.action.clone()).await
}

/// Every request's answer (each slot is filled by `write`; an empty one would be a part
/// nobody found).
fn finish(out: Vec<Option<Result<Acted, FulfilmentError>>>) -> Vec<Result<Acted, FulfilmentError>> {
    out.into_iter()
        .map(|o| o.unwrap_or(Err(FulfilmentError::NotFound)))
        .collect()
}

/// Why a batch went back to one action per transaction.
#[derive(Debug, thiserror::Error)]
enum Split {
    #[error("refused after the batch had written: {0}")]
    Refused(FulfilmentError),
    #[error("an order changed underneath ({0:?})")]
    Changed(TransitionResult),
    #[error(transparent)]
    Storage(#[from] sqlx::Error),
}

impl Split {
    /// The metric's label.
    fn label(&self) -> &'static str {
        match self {
            Split::Refused(_) => "refused",
            Split::Changed(_) => "changed",
            Split::Storage(_) => "storage",
        }
    }
}

impl From<FulfilmentError> for Split {
    fn from(e: FulfilmentError) -> Self {
        match e {
            FulfilmentError::Storage(e) => Split::Storage(e),
            other => Split::Refused(other),
        }
    }
}

/// An action judged good, on its way to the commit.
struct Going {
    /// The request's index in the batch.
    k: usize,
    /// Its part's index in the batch's parts.
    part: usize,
    /// The part's lines (reserved or delivered quantities as the action leaves them).
    lines: Vec<PartLineRow>,
    /// A delivery's lines as read, before their delivered quantities (the vendor's volume
    /// counts the delivered ones).
    before: Option<Vec<PartLineRow>>,
    /// A delivery's amount, VAT included.
    delivered: i64,
    /// Refused after all (its accept's stock was short).
    refused: bool,
}

/// Writes `items` (more than one, each on its own order) in one transaction; `Err` when
/// they must go one by one. An item whose order another transaction holds is left out of the
/// batch (`None`) for the caller to run alone after it: waiting for that lock inside the batch
/// would hold every other order of the batch as long (two batches in flight that share an
/// order — the parts of a split order accepted at once — went one after the other).
async fn together(
    items: &[&PartRequest],
    found: &[&PartRow],
) -> Result<Vec<Option<Result<Acted, FulfilmentError>>>, Split> {
    let app = &items[0].app;
    let now = app.clock().now_ms();
    let mut out: Vec<Option<Result<Acted, FulfilmentError>>> = items.iter().map(|_| None).collect();
    let mut live = Vec::with_capacity(items.len());
    // Each request's words as `act` takes them (trimmed), by its place in the batch.
    let mut reasons: Vec<Option<&str>> = vec![None; items.len()];
    for (k, r) in items.iter().enumerate() {
        match service::checked_reason(&r.acting(), &r.action) {
            Err(e) => out[k] = Some(Err(e)),
            Ok(reason) => {
                reasons[k] = reason;
                live.push(k);
            }
        }
    }
    let order_ids: Vec<Uuid> = live.iter().map(|&k| found[k].order_id).collect();
    let mut tx = app.db().begin_indexed().await?;
    let mut locked = orders::find_many_for_update_skip_locked(&mut tx, &order_ids).await?;
    // The actions on orders held elsewhere stay unanswered here (see above).
    live.retain(|&k| locked.iter().any(|o| o.id == found[k].order_id));
    if live.is_empty() {
        return Ok(out);
    }
    let order_ids: Vec<Uuid> = locked.iter().map(|o| o.id).collect();
    let part_ids: Vec<Uuid> = live.iter().map(|&k| found[k].id).collect();
    let mut parts = repo::parts_for_update(&mut tx, &order_ids).await?;
    let mut lines = repo::lines_tx(&mut tx, &part_ids).await?;

    // 2. Judge in memory.
    let mut going: Vec<Going> = Vec::with_capacity(live.len());
    for &k in &live {
        let r = &items[k];
        // `live` holds only actions on orders this batch locked.
        let Some(part) = parts.iter().position(|p| p.id == found[k].id) else {
            out[k] = Some(Err(FulfilmentError::NotFound));
            continue;
        };
        if let Err(e) = service::judge(&parts[part], Some(r.vendor), &r.action, now) {
            out[k] = Some(Err(e));
            continue;
        }
        let mut mine: Vec<PartLineRow> = lines
            .extract_if(.., |l| l.fulfilment_id == found[k].id)
            .collect();
        let mut before = None;
        let delivered = match &r.action {
            PartAction::Deliver(quantities) => {
                before = Some(mine.clone());
                match service::delivered_amount(&mut mine, quantities) {
                    Ok(amount) => amount,
                    Err(e) => {
                        out[k] = Some(Err(e));
                        continue;
                    }
                }
            }
            _ => 0,
        };
        going.push(Going {
            k,
            part,
            lines: mine,
            before,
            delivered,
            refused: false,
        });
    }

    // 3. The accepts' stock, judged on the stock as committed, in vendor and part order: an
    //    accept it does not cover is refused here and takes nothing. The stock is taken at the
    //    end (6.), so the offer rows — every accept of a vendor's product wants the same
    //    one — are held from there to the commit only.
    let mut accepts: Vec<usize> = (0..going.len())
        .filter(|&g| matches!(items[going[g].k].action, PartAction::Accept))
        .collect();
    accepts.sort_by_key(|&g| (parts[going[g].part].vendor_id, parts[going[g].part].id));
    let mut rows: Vec<(Uuid, Uuid)> = accepts
        .iter()
        .flat_map(|&g| {
            let vendor = parts[going[g].part].vendor_id.unwrap_or_default();
            going[g].lines.iter().map(move |l| (vendor, l.product_id))
        })
        .collect();
    rows.sort_unstable();
    rows.dedup();
    let mut left: HashMap<(Uuid, Uuid), i64> = catalog::stocks(&mut tx, &rows)
        .await?
        .into_iter()
        .map(|(v, p, stock)| ((v, p), stock))
        .collect();
    // What the accepts judged good take at the end, summed by vendor and product (in that
    // order, the order the rows are locked in).
    let mut wanted: std::collections::BTreeMap<(Uuid, Uuid), i64> = Default::default();
    for &g in &accepts {
        let vendor = parts[going[g].part].vendor_id.unwrap_or_default();
        let wants = service::stock_wanted(&going[g].lines);
        let short: Vec<Uuid> = wants
            .iter()
            .filter(|(p, q)| left.get(&(vendor, *p)).is_none_or(|s| s < q))
            .map(|(p, _)| *p)
            .collect();
        if let Some(refusal) = service::out_of_stock(&going[g].lines, &short) {
            out[going[g].k] = Some(Err(refusal));
            going[g].refused = true;
            continue;
        }
        for (p, q) in wants {
            if let Some(s) = left.get_mut(&(vendor, p)) {
                *s -= q;
            }
            *wanted.entry((vendor, p)).or_default() += q;
        }
        for l in going[g].lines.iter_mut() {
            l.reserved_milli = l.qty_milli;
        }
    }
    going.retain(|g| !g.refused);

    // 4. Offers, lines, parts, credit, orders.
    let offers: Vec<(Uuid, Option<&str>)> = going
        .iter()
        .filter(|g| matches!(items[g.k].action, PartAction::Accept))
        .map(|g| (parts[g.part].offer_id.unwrap_or_default(), reasons[g.k]))
        .collect();
    if repo::accept_offers(&mut tx, &offers, now).await? != offers.len() {
        return Err(Split::Changed(TransitionResult::Stale));
    }
    let mut acted_on = HashMap::with_capacity(going.len());
    let mut load = Workloads::default();
    for g in &going {
        let part = &mut parts[g.part];
        load.left(part, g.before.as_deref().unwrap_or(&g.lines));
        let detail = service::advance(part, &g.lines, &items[g.k].action, g.delivered, now);
        part.updated_at_ms = now;
        load.entered(part, &g.lines);
        acted_on.insert(part.order_id, (g.k, detail));
    }
    let written: Vec<PartLineRow> = going
        .iter()
        .filter(|g| !matches!(items[g.k].action, PartAction::Dispatch))
        .flat_map(|g| g.lines.iter().cloned())
        .collect();
    repo::save_lines(&mut tx, &written).await?;
    let moved: Vec<&PartRow> = going.iter().map(|g| &parts[g.part]).collect();
    repo::save_progress(&mut tx, &moved).await?;

    // The answers show each part's offers and shop: one read of each for the batch, before
    // the accounts are locked (from the postings to the commit).
    let acted: Vec<Uuid> = going.iter().map(|g| parts[g.part].id).collect();
    let mut offers = repo::offers_tx(&mut tx, &acted).await?;
    let shop_ids: Vec<Uuid> = going.iter().map(|g| parts[g.part].retailer_id).collect();
    let shops = parties::find_retailers(&mut Reader::Tx(&mut tx), &shop_ids).await?;

    // The orders their parts move, in retailer order (a delivery posts to the account).
    locked.sort_by_key(|o| (o.retailer_id, o.id));
    let mut follows: Vec<(Uuid, usize, Follow<'_>)> = Vec::new();
    for order in &locked {
        let Some((k, detail)) = acted_on.remove(&order.id) else {
            continue;
        };
        let theirs: Vec<PartRow> = parts
            .iter()
            .filter(|p| p.order_id == order.id)
            .cloned()
            .collect();
        let why = reasons[k].unwrap_or(items[k].action.done());
        if let Some(follow) = service::follow(order, &theirs, why, detail) {
            follows.push((order.id, k, follow));
        }
    }
    // The deliveries' credit, posted together, in retailer order (as `locked` is).
    let mut posting: Vec<&mut Follow<'_>> = follows.iter_mut().map(|(_, _, f)| f).collect();
    service::settle(&mut tx, &mut posting, now).await?;
    let system = Actor::system();
    let mut changes: Vec<(&mut OrderRow, Change<'_>)> = Vec::with_capacity(follows.len());
    let mut actors: Vec<&Actor> = Vec::with_capacity(follows.len());
    for order in locked.iter_mut() {
        if let Some((_, k, f)) = follows.iter().find(|(id, _, _)| *id == order.id) {
            actors.push(if f.by_system {
                &system
            } else {
                &items[*k].actor
            });
            let change = Change {
                to: f.to,
                reason: Some(f.reason),
                detail: Some(f.detail.clone()),
            };
            changes.push((order, change));
        }
    }
    match transition::apply_each(&mut tx, &mut changes, &actors).await? {
        TransitionResult::Done => {}
        other => return Err(Split::Changed(other)),
    }

    // 6. The accepts' stock, last, with one statement for them all: the rows locked in
    //    vendor and product order (as every stock taker takes them, and after the accounts,
    //    as a cancellation takes them), each taken by what the batch's accepts want of it.
    //    Stock another transaction took since it was judged is a refusal after the batch
    //    wrote: back to one by one.
    let wanted: Vec<(Uuid, Uuid, i64)> = wanted.into_iter().map(|((v, p), q)| (v, p, q)).collect();
    if !catalog::take_stocks_of(&mut tx, &wanted, now)
        .await?
        .is_empty()
    {
        return Err(Split::Refused(FulfilmentError::OutOfStock(
            "stock taken meanwhile".into(),
        )));
    }
    // The vendors' open parts (a delivery closes one), after everything else it locks.
    // Accepts, dispatches and deliveries give no vendor a part: none can be over a limit.
    load.write(&mut tx).await?;
    tx.commit().await?;

    // Answer.
    for g in going {
        let action = &items[g.k].action;
        metrics::counter!("khaacho_fulfilment_actions_total", "action" => action.name())
            .increment(1);
        let (id, retailer) = (parts[g.part].id, parts[g.part].retailer_id);
        out[g.k] = Some(Ok(Acted {
            part: parts[g.part].clone(),
            lines: g.lines,
            offers: Some(offers.extract_if(.., |o| o.fulfilment_id == id).collect()),
            shop: shops.iter().find(|s| s.id == retailer).cloned(),
        }));
    }
    Ok(out)
}
