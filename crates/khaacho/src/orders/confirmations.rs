//! The retailers' confirmations of receipt, many per transaction: a group commit
//! (`base/group_commit.rs`), as the intake's and the vendors' part actions'.
//!
//! One confirmation alone ([`actions::apply`]) is a transaction of seven round trips: begin,
//! lock the order, the status UPDATE, the event, the `order.changed` job, the audit row, the
//! commit. Every delivered order is confirmed once (or completes itself after
//! `fulfilment.auto_complete_hours`), so at a few hundred orders a second that is a tenth of
//! the database's statements. The confirmations that arrive while a batch commits form the
//! next batch, which does the same with one statement per step for all of them:
//!
//! 1. lock the batch's orders in id order, skipping those another transaction holds (a
//!    vendor's batch in flight): each of those runs alone after the batch, waiting for its
//!    order's lock as [`actions::apply`] does, so no order of the batch waits behind it;
//! 2. judge each in memory with [`actions::apply`]'s rules: an order outside the caller's
//!    scope is `NotFound`, one not `delivered` is refused with its state named;
//! 3. change the orders with one [`transition::apply_each`] (one UPDATE, one event INSERT,
//!    one `order.changed` for the batch), write the audit rows with one INSERT, commit.
//!
//! A second confirmation of an order already in the batch waits for the batch's commit and
//! runs alone (it is then refused: the order is completed). A batch that cannot be written
//! together (an order changed underneath, a storage error) is rolled back and its
//! confirmations run alone, side by side; the answer a caller sees is the same either way.

use std::collections::HashSet;

use uuid::Uuid;

use super::actions::{self, Action, ActionError};
use super::model::{Actor, OrderRow, OrderStatus};
use super::repo;
use super::transition::{self, Change, TransitionResult};
use crate::app::App;
use crate::base::audit::{self, Entry};
use crate::base::group_commit::BatchWriter;
use crate::base::scope::Scope;

/// `actor`'s confirmation of receipt of order `id`, through the confirmations' group commit:
/// the order as it now is (`completed`), or why not, as [`actions::apply`] answers.
pub async fn submit(
    app: &App,
    scope: Scope,
    id: Uuid,
    actor: &Actor,
    reason: Option<&str>,
    audit: Option<Entry>,
) -> Result<OrderRow, ActionError> {
    let reason = actions::checked_reason(Action::Confirm, reason)?.map(str::to_string);
    let request = Confirmation::new(app.clone(), scope, id, actor.clone(), reason, audit);
    app.confirmations().write(request).await?
}

/// One confirmation waiting for its batch.
pub struct Confirmation {
    /// The application (each request carries it, so the writer holds none: the writer's
    /// task ends with the last `App`).
    app: App,
    /// Whose orders the caller may act on.
    scope: Scope,
    /// The order.
    id: Uuid,
    /// For the order's history.
    actor: Actor,
    /// The caller's words, already checked.
    reason: Option<String>,
    /// The caller's audit entry, completed with the change.
    audit: Option<Entry>,
}

impl Confirmation {
    /// `actor`'s confirmation of order `id` within `scope`; `reason` as
    /// [`actions::checked_reason`] left it.
    pub fn new(
        app: App,
        scope: Scope,
        id: Uuid,
        actor: Actor,
        reason: Option<String>,
        audit: Option<Entry>,
    ) -> Self {
        Self {
            app,
            scope,
            id,
            actor,
            reason,
            audit,
        }
    }

    /// Runs it in its own transaction, as an unbatched confirmation.
    async fn alone(&self) -> Result<OrderRow, ActionError> {
        actions::apply(
            &self.app,
            self.scope,
            self.id,
            Action::Confirm,
            &self.actor,
            self.reason.as_deref(),
            None,
            self.audit.clone(),
        )
        .await
    }

    /// The event's reason.
    fn why(&self) -> &str {
        self.reason.as_deref().unwrap_or(Action::Confirm.verb())
    }
}

/// Writes batches of [`Confirmation`]s (see the module's documentation).
pub struct ConfirmationWriter {
    /// On PostgreSQL (row locks: batches may overlap) rather than SQLite (one writer).
    pub postgres: bool,
}

type Answer = Result<OrderRow, ActionError>;

impl BatchWriter for ConfirmationWriter {
    type Item = Confirmation;
    type Output = Answer;

    async fn write(&self, items: &[Confirmation]) -> Result<Vec<Answer>, sqlx::Error> {
        if let [one] = items {
            return Ok(vec![one.alone().await]);
        }
        // The first confirmation of each order goes in the batch; a later one waits for the
        // batch's commit and then runs alone.
        let mut named = HashSet::new();
        let (first, later): (Vec<usize>, Vec<usize>) =
            (0..items.len()).partition(|&k| named.insert(items[k].id));
        let mut out: Vec<Option<Answer>> = items.iter().map(|_| None).collect();
        match together(items, &first).await {
            Ok(answers) => {
                let mut busy = Vec::new();
                for (k, answer) in first.into_iter().zip(answers) {
                    match answer {
                        Some(answer) => out[k] = Some(answer),
                        None => busy.push(k),
                    }
                }
                // Held by another transaction: each alone, side by side (one order each).
                let answers =
                    futures::future::join_all(busy.iter().map(|&k| items[k].alone())).await;
                for (k, answer) in busy.into_iter().zip(answers) {
                    out[k] = Some(answer);
                }
            }
            Err(why) => {
                metrics::counter!("khaacho_confirmation_batches_split_total").increment(1);
                tracing::debug!(batch = first.len(), %why, "confirmations written one by one");
                let answers =
                    futures::future::join_all(first.iter().map(|&k| items[k].alone())).await;
                for (k, answer) in first.into_iter().zip(answers) {
                    out[k] = Some(answer);
                }
            }
        }
        for k in later {
            out[k] = Some(items[k].alone().await);
        }
        Ok(out
            .into_iter()
            .map(|a| a.unwrap_or(Err(ActionError::NotFound)))
            .collect())
    }

    fn max_in_flight(&self) -> usize {
        // As the part actions: two batches side by side on PostgreSQL (they lock orders in id
        // order and skip each other's), one writer on SQLite.
        if self.postgres { 2 } else { 1 }
    }

    fn max_batch(&self) -> usize {
        64
    }

    fn name(&self) -> &'static str {
        "confirmations"
    }
}

/// Why a batch went back to one confirmation per transaction.
#[derive(Debug, thiserror::Error)]
enum Split {
    #[error("an order changed underneath ({0:?})")]
    Changed(TransitionResult),
    #[error(transparent)]
    Storage(#[from] sqlx::Error),
}

/// Confirms `items[k]` for every `k` in `batch` (each on its own order) in one transaction;
/// the answers in `batch`'s order, `None` for one whose order another transaction holds (the
/// caller runs it alone after). `Err`: nothing was written, run them one by one.
async fn together(items: &[Confirmation], batch: &[usize]) -> Result<Vec<Option<Answer>>, Split> {
    let app = &items[batch[0]].app;
    let ids: Vec<Uuid> = batch.iter().map(|&k| items[k].id).collect();
    let mut tx = app.db().begin_indexed().await?;
    let mut locked = repo::find_many_for_update_skip_locked(&mut tx, &ids).await?;
    let mut answers: Vec<Option<Answer>> = batch.iter().map(|_| None).collect();
    // The orders this batch completes, with the index of their confirmation in `batch`.
    let mut going: Vec<(usize, usize)> = Vec::with_capacity(batch.len());
    for (i, &k) in batch.iter().enumerate() {
        let Some(o) = locked.iter().position(|o| o.id == items[k].id) else {
            continue; // held elsewhere: alone after the batch
        };
        if !actions::in_scope(items[k].scope, &locked[o]) {
            answers[i] = Some(Err(ActionError::NotFound));
        } else if let Some(refusal) = actions::not_delivered(Action::Confirm, &locked[o]) {
            answers[i] = Some(Err(refusal));
        } else {
            going.push((i, o));
        }
    }
    if going.is_empty() {
        return Ok(answers);
    }
    let mut entries = Vec::new();
    for &(i, o) in &going {
        let r = &items[batch[i]];
        if let Some(entry) = &r.audit {
            entries.push(
                entry
                    .clone()
                    .action(actions::audit_verb(Action::Confirm))
                    .on("order", r.id)
                    .summary(serde_json::json!({
                        "from": locked[o].status, "to": OrderStatus::Completed.as_str(),
                        "reason": r.why() })),
            );
        }
    }
    // The changes in the order the rows were locked, each with its confirmation's actor.
    let mut actors: Vec<&Actor> = Vec::with_capacity(going.len());
    let mut changes: Vec<(&mut OrderRow, Change<'_>)> = Vec::with_capacity(going.len());
    for (o, order) in locked.iter_mut().enumerate() {
        if let Some(&(i, _)) = going.iter().find(|&&(_, g)| g == o) {
            let r = &items[batch[i]];
            actors.push(&r.actor);
            changes.push((
                order,
                Change {
                    to: OrderStatus::Completed,
                    reason: Some(r.why()),
                    detail: None,
                },
            ));
        }
    }
    match transition::apply_each(&mut tx, &mut changes, &actors).await? {
        TransitionResult::Done => {}
        other => return Err(Split::Changed(other)),
    }
    audit::record_many_tx(&mut tx, &entries).await?;
    tx.commit().await?;
    for &(i, o) in &going {
        answers[i] = Some(Ok(locked[o].clone()));
    }
    Ok(answers)
}
