//! Notifications of order changes: a consumer of `order.changed` ([`on_order_changes`])
//! that writes, in the consumer's transaction, the outbox messages a change means to the
//! retailer (confirmation, acceptance, dispatch, delivery with the request to confirm receipt,
//! hold, rejection, cancellation with the reason) and to vendors (a new offer with its
//! reference, lines, total, deadline and how to answer; the cancellation of a part).
//!
//! Each message carries a key — the event (or offer) it is about, the recipient and the
//! template — unique in the outbox, so a rerun of an `order.changed` batch writes nothing
//! twice. Messages go to the party's phone, on the channel it last wrote from (WhatsApp when
//! it never wrote), in the party's language setting (`retailers.language`,
//! `vendors.language`), else the language of its conversation, else English.
//!
//! A note (an event that leaves the status as it was: an offer moved to another vendor)
//! tells only the vendors of the order's new offers.
//!
//! This consumer sits on the path of every order, so it reads and writes per batch, never
//! per change: one read of the batch's orders, one of their new offers and one of those
//! offers' lines, one of the cancelled parts, one of the recipients' languages and one of
//! their channels, one multi-row insert of the messages (and one of their send jobs).

use std::collections::{BTreeSet, HashMap};

use serde_json::json;
use uuid::Uuid;

use super::outbox::{self, Keyed, Reply};
use super::phone::MessageChannel;
use super::service::conversation::short_ref;
use super::templates::Language;
use crate::base::db::{Tx, push_rows_at, push_rows_by, push_texts};
use crate::base::time::fmt_short;
use crate::orders::model::{OrderStatus, created_at_of};
use crate::with_tx;

/// One change of an order, as `orders::transition`'s consumer passes it.
#[derive(Clone, Copy, Debug)]
pub struct OrderChange {
    /// The order.
    pub order_id: Uuid,
    /// The event written for the change (part of each message's key).
    pub event_id: Uuid,
    /// The status before (`None` for a new order; the same as `to` for a note).
    pub from: Option<OrderStatus>,
    /// The new status.
    pub to: OrderStatus,
}

impl OrderChange {
    /// An event that left the status as it was (an offer moved to another vendor).
    fn is_note(&self) -> bool {
        self.from == Some(self.to)
    }

    /// The retailer's template for this change, if the retailer hears of it.
    fn retailer_template(&self, order: &OrderInfo) -> Option<&'static str> {
        if self.is_note() {
            return None;
        }
        Some(match self.to {
            // An order placed by message was confirmed in its conversation (`order_placed`).
            OrderStatus::Validated if order.by_message => return None,
            OrderStatus::Validated => "order_confirmed",
            OrderStatus::OnHold => "order_on_hold",
            OrderStatus::Accepted => "order_accepted",
            // A part given back after the accept: the retailer was told "accepted".
            OrderStatus::Routed if self.from == Some(OrderStatus::Accepted) => {
                "order_vendor_changed"
            }
            OrderStatus::Dispatched => "order_dispatched",
            OrderStatus::Delivered => "order_delivered",
            OrderStatus::Rejected => "order_rejected",
            OrderStatus::Cancelled => "order_cancelled",
            _ => return None,
        })
    }

    /// Whether the order's new offers go out to their vendors.
    fn offers_vendors(&self) -> bool {
        self.to == OrderStatus::Routed || self.is_note()
    }

    /// Whether anyone may hear of this change.
    fn may_matter(&self) -> bool {
        self.is_note()
            || !matches!(
                self.to,
                OrderStatus::Received | OrderStatus::Completed | OrderStatus::Failed
            )
    }
}

/// A message to write, before its recipient's language and channel are known.
struct Pending {
    phone: String,
    /// The party's own setting, if any.
    language: Option<String>,
    template: &'static str,
    vars: serde_json::Value,
    key: String,
}

/// Writes the messages `changes` mean (see the module docs).
pub async fn on_order_changes(
    tx: &mut Tx,
    changes: &[OrderChange],
    now: i64,
    send_now: bool,
) -> Result<(), sqlx::Error> {
    let changes: Vec<&OrderChange> = changes.iter().filter(|c| c.may_matter()).collect();
    if changes.is_empty() {
        return Ok(());
    }
    let orders = orders_of(tx, &changes).await?;
    let mut pending = Vec::new();
    for ch in &changes {
        let Some(order) = orders.get(&ch.order_id) else {
            continue;
        };
        if let Some(template) = ch.retailer_template(order) {
            let reason = order
                .reject_reason
                .clone()
                .or(order.hold_reason.clone())
                .unwrap_or_default();
            pending.push(Pending {
                phone: order.retailer_phone.clone(),
                language: order.retailer_language.clone(),
                template,
                vars: json!({
                    "ref": short_ref(order.id),
                    "total": order.total_paisa.map(khaacho_credit::npr).unwrap_or_default(),
                    "reason": reason,
                }),
                key: format!("{}:retailer:{template}", ch.event_id),
            });
        }
    }
    let offered: Vec<Uuid> = distinct(changes.iter().filter(|c| c.offers_vendors()));
    offers(tx, &offered, &mut pending).await?;
    let cancelled: Vec<&OrderChange> = changes
        .iter()
        .copied()
        .filter(|c| c.to == OrderStatus::Cancelled && !c.is_note())
        .collect();
    cancelled_parts(tx, &cancelled, &orders, &mut pending).await?;
    write(tx, pending, now, send_now).await
}

/// The distinct orders of `changes`.
fn distinct<'c>(changes: impl Iterator<Item = &'c &'c OrderChange>) -> Vec<Uuid> {
    changes
        .map(|c| c.order_id)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

struct OrderInfo {
    id: Uuid,
    retailer_phone: String,
    retailer_language: Option<String>,
    total_paisa: Option<i64>,
    hold_reason: Option<String>,
    reject_reason: Option<String>,
    /// Placed by WhatsApp or SMS.
    by_message: bool,
}

/// The orders of `changes` (one read).
async fn orders_of(
    tx: &mut Tx,
    changes: &[&OrderChange],
) -> Result<HashMap<Uuid, OrderInfo>, sqlx::Error> {
    let keys: Vec<(Uuid, i64)> = distinct(changes.iter())
        .into_iter()
        .filter_map(|id| Some((id, created_at_of(id)?)))
        .collect();
    type Row = (
        Uuid,
        String,
        Option<String>,
        Option<i64>,
        Option<String>,
        Option<String>,
        String,
    );
    let rows: Vec<Row> = with_tx!(tx, c => {
        let mut qb = sqlx::QueryBuilder::new(
            "SELECT o.id, r.phone, r.language, o.total_paisa, o.hold_reason, o.reject_reason, o.channel FROM");
        push_rows_at(&mut qb, "orders", "o", ("id", "created_at_ms"), &keys, None);
        qb.push(" JOIN retailers r ON r.id = o.retailer_id");
        qb.build_query_as::<Row>().fetch_all(&mut *c).await?
    });
    Ok(rows
        .into_iter()
        .map(|(id, phone, language, total, hold, reject, channel)| {
            let info = OrderInfo {
                by_message: channel == "whatsapp" || channel == "sms",
                id,
                retailer_phone: phone,
                retailer_language: language,
                total_paisa: total,
                hold_reason: hold,
                reject_reason: reject,
            };
            (id, info)
        })
        .collect())
}

/// The open offers of `orders`, one message to each vendor (two reads: the parts, their
/// lines). An offer already told is skipped by its key when the messages are written.
async fn offers(
    tx: &mut Tx,
    orders: &[Uuid],
    pending: &mut Vec<Pending>,
) -> Result<(), sqlx::Error> {
    if orders.is_empty() {
        return Ok(());
    }
    type Part = (Uuid, Uuid, String, Option<String>, i64, i64, String, String);
    let parts: Vec<Part> = with_tx!(tx, c => {
        let mut qb = sqlx::QueryBuilder::new(
            "SELECT f.id, o.id, v.phone, v.language, o.deadline_ms, f.total_paisa, r.name, r.district FROM");
        push_rows_by(&mut qb, "fulfilments", "f", "order_id", orders, None);
        qb.push(
            " JOIN fulfilment_offers o ON o.id = f.offer_id \
             JOIN vendors v ON v.id = o.vendor_id JOIN retailers r ON r.id = f.retailer_id \
             WHERE f.status = 'offered' AND o.status = 'offered' ORDER BY f.id");
        qb.build_query_as::<Part>().fetch_all(&mut *c).await?
    });
    if parts.is_empty() {
        return Ok(());
    }
    let part_ids: Vec<Uuid> = parts.iter().map(|p| p.0).collect();
    let lines: Vec<(Uuid, String, i64, String)> = with_tx!(tx, c => {
        let mut qb = sqlx::QueryBuilder::new(
            "SELECT l.fulfilment_id, p.name, l.qty_milli, l.unit FROM");
        push_rows_by(&mut qb, "fulfilment_lines", "l", "fulfilment_id", &part_ids, None);
        qb.push(" JOIN products p ON p.id = l.product_id ORDER BY l.fulfilment_id, l.line_no");
        qb.build_query_as::<(Uuid, String, i64, String)>().fetch_all(&mut *c).await?
    });
    let mut by_part: HashMap<Uuid, Vec<String>> = HashMap::new();
    for (part, name, qty, unit) in &lines {
        by_part
            .entry(*part)
            .or_default()
            .push(format!("- {} {unit} {name}", qty_text(*qty)));
    }
    for (part, offer, phone, language, deadline, total, shop, district) in parts {
        let lines = by_part.remove(&part).unwrap_or_default();
        pending.push(Pending {
            phone,
            language,
            template: "vendor_offer",
            vars: json!({
                "ref": short_ref(part),
                "lines": lines.join("\n"),
                "total": khaacho_credit::npr(total),
                "deadline": fmt_short(deadline),
                "shop": shop,
                "district": district,
            }),
            key: format!("{offer}:vendor:vendor_offer"),
        });
    }
    Ok(())
}

/// The parts of cancelled orders that had a vendor: one message to each (one read).
async fn cancelled_parts(
    tx: &mut Tx,
    changes: &[&OrderChange],
    orders: &HashMap<Uuid, OrderInfo>,
    pending: &mut Vec<Pending>,
) -> Result<(), sqlx::Error> {
    if changes.is_empty() {
        return Ok(());
    }
    let ids = distinct(changes.iter());
    let rows: Vec<(Uuid, Uuid, String, Option<String>)> = with_tx!(tx, c => {
        let mut qb =
            sqlx::QueryBuilder::new("SELECT f.order_id, f.id, v.phone, v.language FROM");
        push_rows_by(&mut qb, "fulfilments", "f", "order_id", &ids, None);
        qb.push(" JOIN vendors v ON v.id = f.vendor_id ORDER BY f.id");
        qb.build_query_as::<(Uuid, Uuid, String, Option<String>)>().fetch_all(&mut *c).await?
    });
    for ch in changes {
        let reason = orders
            .get(&ch.order_id)
            .and_then(|o| o.reject_reason.clone())
            .unwrap_or_default();
        for (_, part, phone, language) in rows.iter().filter(|r| r.0 == ch.order_id) {
            pending.push(Pending {
                phone: phone.clone(),
                language: language.clone(),
                template: "vendor_part_cancelled",
                vars: json!({ "ref": short_ref(*part), "reason": reason }),
                key: format!("{}:{part}:vendor_part_cancelled", ch.event_id),
            });
        }
    }
    Ok(())
}

/// Writes `pending` in each recipient's language, on its channel, once per key: one read of
/// the recipients' conversations, one of their last inbound channel, one insert.
async fn write(
    tx: &mut Tx,
    pending: Vec<Pending>,
    now: i64,
    send_now: bool,
) -> Result<(), sqlx::Error> {
    if pending.is_empty() {
        return Ok(());
    }
    let phones: Vec<String> = pending
        .iter()
        .map(|p| p.phone.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    type ByPhone = Vec<(String, String)>;
    let (talked, channels): (ByPhone, ByPhone) = with_tx!(tx, c => {
        let mut qb = sqlx::QueryBuilder::new("SELECT phone, language FROM conversations WHERE");
        push_texts(&mut qb, "phone", &phones);
        let talked = qb.build_query_as::<(String, String)>().fetch_all(&mut *c).await?;
        // Each phone's latest inbound message (answered from its (phone, time) index).
        let mut qb = sqlx::QueryBuilder::new(
            "SELECT i.from_phone, i.channel FROM inbound_messages i WHERE");
        push_texts(&mut qb, "i.from_phone", &phones);
        qb.push(" AND i.received_at_ms = (SELECT MAX(j.received_at_ms) FROM inbound_messages j \
                  WHERE j.from_phone = i.from_phone)");
        let channels = qb.build_query_as::<(String, String)>().fetch_all(&mut *c).await?;
        (talked, channels)
    });
    let talked: HashMap<String, String> = talked.into_iter().collect();
    let channels: HashMap<String, String> = channels.into_iter().collect();
    let messages: Vec<Keyed> = pending
        .into_iter()
        .map(|p| {
            let lang = p
                .language
                .as_deref()
                .or(talked.get(&p.phone).map(String::as_str))
                .map_or(Language::En, Language::parse);
            let channel = channels
                .get(&p.phone)
                .and_then(|c| MessageChannel::parse(c))
                .unwrap_or(MessageChannel::Whatsapp);
            Keyed {
                recipient: p.phone,
                channel,
                lang,
                reply: Reply {
                    template: p.template,
                    vars: p.vars,
                },
                key: p.key,
            }
        })
        .collect();
    outbox::queue_once_many(tx, &messages, now, send_now).await?;
    Ok(())
}

/// A quantity in base units (thousandths) as people write it: "5", "2.5".
fn qty_text(milli: i64) -> String {
    if milli % 1000 == 0 {
        (milli / 1000).to_string()
    } else {
        let s = format!("{:.3}", milli as f64 / 1000.0);
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::qty_text;

    #[test]
    fn quantities_read_as_people_write_them() {
        assert_eq!(qty_text(5000), "5");
        assert_eq!(qty_text(2500), "2.5");
        assert_eq!(qty_text(125), "0.125");
    }
}
