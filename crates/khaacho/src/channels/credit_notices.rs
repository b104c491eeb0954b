//! Messages to a retailer about its credit, written in the caller's transaction through the
//! outbox, once per key: the payment reminders (`credit::reminders`: 3 days before a due
//! date, on it, and 7 days after while still unpaid) and the credit alerts the retailer must
//! hear of (`credit::alerts`: the overdue warning, the block of credit orders, the
//! late-payment limit cut). Operators' alerts (high risk, order spikes) stay with operators.
//!
//! Like `notify`, this file is called from a feature below `channels` (credit) and so
//! imports nothing from that feature, nor anything that imports it: only the outbox, the
//! templates and the floor. Language: the retailer's setting, else its conversation's, else
//! English; channel: that of its last inbound message, else WhatsApp; and the same message
//! by e-mail (the outbox's `email` channel) when the retailer has an address. One read of the
//! retailers, one of their conversations, one of their channels and one insert per call.

use std::collections::{BTreeSet, HashMap};

use uuid::Uuid;

use super::outbox::{self, Email, Keyed, Reply};
use super::phone::MessageChannel;
use super::templates::Language;
use crate::base::db::{Tx, push_ids, push_texts};
use crate::with_tx;

/// One message to a retailer.
#[derive(Clone, Debug)]
pub struct Notice {
    /// The retailer.
    pub retailer_id: Uuid,
    /// Template name (`templates/{en,ne}/messages.txt`).
    pub template: &'static str,
    /// Its variables.
    pub vars: serde_json::Value,
    /// Written at most once per key.
    pub key: String,
}

/// The short reference of an order in messages (its last six hex digits, upper-case), as
/// the conversations understand it.
pub fn order_ref(id: Uuid) -> String {
    let hex = id.simple().to_string();
    hex[hex.len() - 6..].to_uppercase()
}

/// Writes `notices` (see the module docs), and the same by e-mail to retailers with an
/// address (key `<key>:email`); returns how many were new. `send_now`/`email_now`: enqueue
/// the send jobs (else the outbox sweep sends them).
pub async fn queue(
    tx: &mut Tx,
    notices: &[Notice],
    now_ms: i64,
    send_now: bool,
    email_now: bool,
) -> Result<usize, sqlx::Error> {
    if notices.is_empty() {
        return Ok(0);
    }
    let ids: Vec<Uuid> = notices
        .iter()
        .map(|n| n.retailer_id)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    type Party = (Uuid, String, Option<String>, Option<String>);
    let parties: Vec<Party> = with_tx!(tx, c => {
        let mut qb = sqlx::QueryBuilder::new("SELECT id, phone, language, email FROM retailers WHERE");
        push_ids(&mut qb, "id", &ids);
        qb.build_query_as::<Party>().fetch_all(&mut *c).await?
    });
    let phones: Vec<String> = parties
        .iter()
        .map(|p| p.1.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    type Pairs = Vec<(String, String)>;
    let (talked, channels): (Pairs, Pairs) = with_tx!(tx, c => {
        let mut qb = sqlx::QueryBuilder::new("SELECT phone, language FROM conversations WHERE");
        push_texts(&mut qb, "phone", &phones);
        let talked = qb.build_query_as::<(String, String)>().fetch_all(&mut *c).await?;
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
    let parties: HashMap<Uuid, (String, Option<String>, Option<String>)> = parties
        .into_iter()
        .map(|(id, phone, lang, email)| (id, (phone, lang, email)))
        .collect();
    let lang_of = |phone: &String, setting: &Option<String>| {
        setting
            .as_deref()
            .or(talked.get(phone).map(String::as_str))
            .map_or(Language::En, Language::parse)
    };
    let emails: Vec<Email> = notices
        .iter()
        .filter_map(|n| {
            let (phone, setting, email) = parties.get(&n.retailer_id)?;
            Some(Email {
                to: email.clone()?,
                lang: lang_of(phone, setting),
                reply: Reply {
                    template: n.template,
                    vars: n.vars.clone(),
                },
                key: format!("{}:email", n.key),
            })
        })
        .collect();
    let messages: Vec<Keyed> = notices
        .iter()
        .filter_map(|n| {
            let (phone, setting, _) = parties.get(&n.retailer_id)?;
            let lang = lang_of(phone, setting);
            let channel = channels
                .get(phone)
                .and_then(|c| MessageChannel::parse(c))
                .unwrap_or(MessageChannel::Whatsapp);
            Some(Keyed {
                recipient: phone.clone(),
                channel,
                lang,
                reply: Reply {
                    template: n.template,
                    vars: n.vars.clone(),
                },
                key: n.key.clone(),
            })
        })
        .collect();
    let texts = outbox::queue_once_many(tx, &messages, now_ms, send_now).await?;
    let mails = outbox::queue_email_once_many(tx, &emails, now_ms, email_now).await?;
    Ok(texts + mails)
}
