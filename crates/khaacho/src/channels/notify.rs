//! Notifications of order changes: a consumer of `order.changed` ([`on_order_changes`])
//! that writes, in the consumer's transaction, the outbox messages a change means to the
//! retailer (confirmation, acceptance, dispatch, delivery with the request to confirm receipt,
//! hold, rejection, cancellation with the reason) and to vendors (a new offer with its
//! reference, lines, total, deadline and how to answer; the cancellation of a part).
//!
//! Each message carries a key — the event (or offer) it is about, the recipient and the
//! template — unique in the outbox, so a rerun of an `order.changed` batch writes nothing
//! twice. Messages go to the party's phone, on the channel it last wrote from (WhatsApp when
//! it never wrote), in the language of its conversation (English when there is none).

use serde_json::json;
use uuid::Uuid;

use super::outbox::{self, Reply};
use super::phone::MessageChannel;
use super::service::conversation::short_ref;
use super::templates::Language;
use crate::base::db::Tx;
use crate::base::time::fmt_time;
use crate::orders::model::OrderStatus;
use crate::with_tx;

/// One change of an order, as `orders::transition`'s consumer passes it.
#[derive(Clone, Copy, Debug)]
pub struct OrderChange {
    /// The order.
    pub order_id: Uuid,
    /// The event written for the change (part of each message's key).
    pub event_id: Uuid,
    /// The new status.
    pub to: OrderStatus,
}

/// Writes the messages `changes` mean (see the module docs).
pub async fn on_order_changes(
    tx: &mut Tx,
    changes: &[OrderChange],
    now: i64,
    send_now: bool,
) -> Result<(), sqlx::Error> {
    for ch in changes {
        if matches!(
            ch.to,
            OrderStatus::Received | OrderStatus::Completed | OrderStatus::Failed
        ) {
            continue;
        }
        let Some(order) = order_of(tx, ch.order_id).await? else {
            continue;
        };
        let retailer_template = match ch.to {
            // An order placed by message was confirmed in its conversation (`order_placed`).
            OrderStatus::Validated if order.by_message => None,
            OrderStatus::Validated => Some("order_confirmed"),
            OrderStatus::OnHold => Some("order_on_hold"),
            OrderStatus::Accepted => Some("order_accepted"),
            OrderStatus::Dispatched => Some("order_dispatched"),
            OrderStatus::Delivered => Some("order_delivered"),
            OrderStatus::Rejected => Some("order_rejected"),
            OrderStatus::Cancelled => Some("order_cancelled"),
            _ => None,
        };
        let vendors = matches!(ch.to, OrderStatus::Routed | OrderStatus::Cancelled);
        if retailer_template.is_none() && !vendors {
            continue;
        }
        if let Some(template) = retailer_template {
            let reason = order
                .reject_reason
                .clone()
                .or(order.hold_reason.clone())
                .unwrap_or_default();
            let vars = json!({
                "ref": short_ref(order.id),
                "total": order.total_paisa.map(khaacho_credit::npr).unwrap_or_default(),
                "reason": reason,
            });
            let key = format!("{}:retailer:{template}", ch.event_id);
            send(
                tx,
                &order.retailer_phone,
                template,
                vars,
                &key,
                now,
                send_now,
            )
            .await?;
        }
        match ch.to {
            OrderStatus::Routed => offers(tx, ch.order_id, now, send_now).await?,
            OrderStatus::Cancelled => {
                cancelled_parts(tx, ch, order.reject_reason.as_deref(), now, send_now).await?
            }
            _ => {}
        }
    }
    Ok(())
}

struct OrderInfo {
    id: Uuid,
    retailer_phone: String,
    total_paisa: Option<i64>,
    hold_reason: Option<String>,
    reject_reason: Option<String>,
    /// Placed by WhatsApp or SMS.
    by_message: bool,
}

async fn order_of(tx: &mut Tx, id: Uuid) -> Result<Option<OrderInfo>, sqlx::Error> {
    type Row = (
        Uuid,
        String,
        Option<i64>,
        Option<String>,
        Option<String>,
        String,
    );
    let row: Option<Row> = with_tx!(tx, c =>
        sqlx::query_as(
            "SELECT o.id, r.phone, o.total_paisa, o.hold_reason, o.reject_reason, o.channel FROM orders o \
             JOIN retailers r ON r.id = o.retailer_id WHERE o.id = $1")
            .bind(id).fetch_optional(&mut *c).await?);
    Ok(row.map(
        |(id, retailer_phone, total_paisa, hold_reason, reject_reason, channel)| OrderInfo {
            by_message: channel == "whatsapp" || channel == "sms",
            id,
            retailer_phone,
            total_paisa,
            hold_reason,
            reject_reason,
        },
    ))
}

/// The new offers of a routed order, one message to each vendor.
async fn offers(tx: &mut Tx, order_id: Uuid, now: i64, send_now: bool) -> Result<(), sqlx::Error> {
    let rows: Vec<(Uuid, Uuid, String, i64, i64)> = with_tx!(tx, c =>
        sqlx::query_as(
            "SELECT f.id, o.id, v.phone, o.deadline_ms, f.total_paisa FROM fulfilments f \
             JOIN fulfilment_offers o ON o.id = f.offer_id JOIN vendors v ON v.id = o.vendor_id \
             WHERE f.order_id = $1 AND f.status = 'offered' AND o.status = 'offered' ORDER BY f.id")
            .bind(order_id).fetch_all(&mut *c).await?);
    for (part, offer, phone, deadline, total) in rows {
        let lines: Vec<(String, i64, String)> = with_tx!(tx, c =>
            sqlx::query_as(
                "SELECT p.name, l.qty_milli, l.unit FROM fulfilment_lines l JOIN products p ON p.id = l.product_id \
                 WHERE l.fulfilment_id = $1 ORDER BY l.line_no")
                .bind(part).fetch_all(&mut *c).await?);
        let lines: Vec<String> = lines
            .iter()
            .map(|(name, qty, unit)| format!("- {} {unit} {name}", qty_text(*qty)))
            .collect();
        let vars = json!({
            "ref": short_ref(part),
            "lines": lines.join("\n"),
            "total": khaacho_credit::npr(total),
            "deadline": fmt_time(deadline),
        });
        let key = format!("{offer}:vendor:vendor_offer");
        send(tx, &phone, "vendor_offer", vars, &key, now, send_now).await?;
    }
    Ok(())
}

/// The parts of a cancelled order that had a vendor: one message to each.
async fn cancelled_parts(
    tx: &mut Tx,
    ch: &OrderChange,
    reason: Option<&str>,
    now: i64,
    send_now: bool,
) -> Result<(), sqlx::Error> {
    let rows: Vec<(Uuid, String)> = with_tx!(tx, c =>
        sqlx::query_as(
            "SELECT f.id, v.phone FROM fulfilments f JOIN vendors v ON v.id = f.vendor_id \
             WHERE f.order_id = $1 ORDER BY f.id")
            .bind(ch.order_id).fetch_all(&mut *c).await?);
    for (part, phone) in rows {
        let vars = json!({ "ref": short_ref(part), "reason": reason.unwrap_or_default() });
        let key = format!("{}:{part}:vendor_part_cancelled", ch.event_id);
        send(
            tx,
            &phone,
            "vendor_part_cancelled",
            vars,
            &key,
            now,
            send_now,
        )
        .await?;
    }
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

/// Queues one message to `phone` in its language, on its channel, once per `key`.
async fn send(
    tx: &mut Tx,
    phone: &str,
    template: &'static str,
    vars: serde_json::Value,
    key: &str,
    now: i64,
    send_now: bool,
) -> Result<(), sqlx::Error> {
    let (lang, channel): (Option<String>, Option<String>) = with_tx!(tx, c => {
        let lang: Option<String> = sqlx::query_scalar("SELECT language FROM conversations WHERE phone = $1")
            .bind(phone).fetch_optional(&mut *c).await?;
        let channel: Option<String> = sqlx::query_scalar(
            "SELECT channel FROM inbound_messages WHERE from_phone = $1 ORDER BY received_at_ms DESC LIMIT 1")
            .bind(phone).fetch_optional(&mut *c).await?;
        (lang, channel)
    });
    let lang = lang.map_or(Language::En, |l| Language::parse(&l));
    let channel = channel
        .and_then(|c| MessageChannel::parse(&c))
        .unwrap_or(MessageChannel::Whatsapp);
    let reply = Reply { template, vars };
    outbox::queue_once(tx, phone, channel, lang, &reply, key, now, send_now).await?;
    Ok(())
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
