//! The webhooks' consumer of `order.changed` ([`on_order_changes`]): in the consumer's
//! transaction, one delivery per (subscription, change) that the subscription wants and
//! may see, with the exact JSON body that will be signed and posted.
//!
//! A vendor's subscription hears only of orders in which it has a part, rendered through
//! the vendor visibility policy (`orders::visibility`): its own parts, no order total, no
//! retailer. A staff-wide subscription (no vendor) hears of every order, with its total and
//! every part.
//!
//! This sits on the path of every order, so it does a constant number of statements per
//! batch, never per change: one read of the active subscriptions (and nothing more when
//! none wants any change of the batch), one read of the batch's orders, one of their parts,
//! one multi-row insert of the deliveries (per 200) and one of their send jobs.

use std::collections::{BTreeSet, HashMap};

use serde_json::json;
use uuid::Uuid;

use super::repo::{self, NewDelivery};
use super::sender::DeliverWebhook;
use crate::base::db::{Tx, push_rows_at, push_rows_by};
use crate::base::time::fmt_time;
use crate::orders::model::{OrderStatus, created_at_of};
use crate::orders::visibility::Visibility;
use crate::queue::{EnqueueOptions, enqueue_batch};
use crate::with_tx;

/// One change of an order, as `orders::transition`'s consumer passes it.
#[derive(Clone, Copy, Debug)]
pub struct OrderEvent {
    /// The order.
    pub order_id: Uuid,
    /// The event written for the change (the delivery's `Khaacho-Event-Id`).
    pub event_id: Uuid,
    /// The status before (`None` for a new order; the same as `to` for a note).
    pub from: Option<OrderStatus>,
    /// The new status.
    pub to: OrderStatus,
}

/// The note type: an event that left the status as it was (an offer moved to another vendor).
pub const REASSIGNED: &str = "order.reassigned";

impl OrderEvent {
    /// `order.<new status>`, or [`REASSIGNED`] for a note.
    pub fn event_type(&self) -> String {
        if self.from == Some(self.to) {
            REASSIGNED.to_string()
        } else {
            format!("order.{}", self.to.as_str())
        }
    }
}

/// Every event type a subscription may ask for (`*`: all of them).
pub fn event_types() -> Vec<String> {
    let mut out: Vec<String> = OrderStatus::ALL
        .iter()
        .map(|s| format!("order.{}", s.as_str()))
        .collect();
    out.push(REASSIGNED.to_string());
    out
}

struct Part {
    id: Uuid,
    vendor_id: Option<Uuid>,
    status: String,
    total_paisa: i64,
}

/// Writes the deliveries `changes` mean (see the module docs).
pub async fn on_order_changes(
    tx: &mut Tx,
    changes: &[OrderEvent],
    now_ms: i64,
) -> Result<usize, sqlx::Error> {
    if changes.is_empty() {
        return Ok(0);
    }
    let subs = repo::active_subscriptions(tx).await?;
    let types: Vec<String> = changes.iter().map(OrderEvent::event_type).collect();
    if !subs
        .iter()
        .any(|s| types.iter().any(|t| s.wants(t.as_str())))
    {
        return Ok(0);
    }
    let keys: Vec<(Uuid, i64)> = changes
        .iter()
        .map(|c| c.order_id)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter_map(|id| Some((id, created_at_of(id)?)))
        .collect();
    let ids: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
    type OrderRow = (Uuid, Uuid, Option<i64>);
    type PartRow = (Uuid, Uuid, Option<Uuid>, String, i64);
    let (orders, parts): (Vec<OrderRow>, Vec<PartRow>) = with_tx!(tx, c => {
        let mut qb = sqlx::QueryBuilder::new(
            "SELECT o.id, o.retailer_id, o.total_paisa FROM");
        push_rows_at(&mut qb, "orders", "o", ("id", "created_at_ms"), &keys, None);
        let orders = qb.build_query_as::<OrderRow>().fetch_all(&mut *c).await?;
        let mut qb = sqlx::QueryBuilder::new(
            "SELECT f.order_id, f.id, f.vendor_id, f.status, f.total_paisa FROM");
        push_rows_by(&mut qb, "fulfilments", "f", "order_id", &ids, None);
        qb.push(" ORDER BY f.id");
        let parts = qb.build_query_as::<PartRow>().fetch_all(&mut *c).await?;
        (orders, parts)
    });
    let orders: HashMap<Uuid, (Uuid, Option<i64>)> = orders
        .into_iter()
        .map(|(id, retailer, total)| (id, (retailer, total)))
        .collect();
    let mut parts_of: HashMap<Uuid, Vec<Part>> = HashMap::new();
    for (order, id, vendor_id, status, total_paisa) in parts {
        parts_of.entry(order).or_default().push(Part {
            id,
            vendor_id,
            status,
            total_paisa,
        });
    }
    let mut rows = Vec::new();
    for (ch, event_type) in changes.iter().zip(&types) {
        let Some((retailer, total)) = orders.get(&ch.order_id) else {
            continue;
        };
        let parts = parts_of
            .get(&ch.order_id)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for sub in subs.iter().filter(|s| s.wants(event_type)) {
            let vis = match sub.vendor_id {
                Some(v) => Visibility::Vendor(v),
                None => Visibility::Full,
            };
            let seen: Vec<&Part> = match vis {
                Visibility::Full => parts.iter().collect(),
                Visibility::Vendor(v) => parts.iter().filter(|p| p.vendor_id == Some(v)).collect(),
            };
            if matches!(vis, Visibility::Vendor(_)) && seen.is_empty() {
                continue; // Not about this vendor's parts.
            }
            let mut data = json!({
                "order_id": ch.order_id,
                "from": ch.from.map(OrderStatus::as_str),
                "to": ch.to.as_str(),
                "parts": seen.iter().map(|p| json!({
                    "id": p.id, "vendor_id": p.vendor_id, "status": p.status, "total_paisa": p.total_paisa,
                })).collect::<Vec<_>>(),
            });
            if vis.shows_totals() {
                data["retailer_id"] = json!(retailer);
                data["total_paisa"] = json!(total);
            }
            let body = json!({
                "id": ch.event_id,
                "type": event_type,
                "created_at": fmt_time(now_ms),
                "data": data,
            });
            rows.push(NewDelivery {
                id: Uuid::now_v7(),
                subscription_id: sub.id,
                event_id: ch.event_id,
                event_type: event_type.clone(),
                payload: body.to_string(),
            });
        }
    }
    let written = repo::insert_deliveries(tx, &rows, now_ms).await?;
    if !written.is_empty() {
        let jobs: Vec<DeliverWebhook> = written.iter().map(|&id| DeliverWebhook { id }).collect();
        let batch: Vec<(&DeliverWebhook, EnqueueOptions)> = jobs
            .iter()
            .map(|j| (j, EnqueueOptions::default()))
            .collect();
        enqueue_batch(tx, &batch).await?;
    }
    Ok(written.len())
}
