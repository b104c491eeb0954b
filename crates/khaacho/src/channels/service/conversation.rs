//! What an inbound message means: who wrote (a retailer, a vendor, or an unknown number),
//! what they ask ([`intents`](crate::channels::intents)), and what it does in their
//! conversation (a draft order and its open questions, with a TTL). Business rules are not
//! repeated here: orders go through the intake, a vendor's answer through
//! `fulfilment::service::act`, a retailer's receipt or issue through `orders::actions`.
//!
//! One run per inbound message, in a job. Outside calls (the parser, the intake, `act`)
//! happen first; then one transaction marks the message handled, saves the conversation
//! (conditionally: two messages of one phone handled at once make the later one retry),
//! writes the replies to the outbox and raises any alert. A retried run finds the intake's
//! idempotency record (the draft id), so YES places one order whatever happens.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::types::Json;
use uuid::Uuid;

use super::draft::{self, Draft, DraftLine, Question};
use crate::app::{App, JobContext};
use crate::base::alerts::{self, NewAlert};
use crate::base::db::Reader;
use crate::base::scope::Scope;
use crate::base::time::fmt_short;
use crate::channels::intents::{Intent, bare_number, classify, is_devanagari};
use crate::channels::outbox::{self, Reply};
use crate::channels::phone::MessageChannel;
use crate::channels::repo::{self, ConversationRow, InboundRow};
use crate::channels::templates::{Language, render, status_word};
use crate::fulfilment::repo::{self as parts, PartStatus};
use crate::fulfilment::service::{Acting, FulfilmentError, PartAction, act};
use crate::orders::actions::{self, Action, ActionError};
use crate::orders::intake::{CreateOrder, IntakeError, OrderRequest};
use crate::orders::model::Actor;
use crate::orders::repo as orders;
use crate::parties::repo as parties;
use crate::queue::{Job, JobError, Priority, RetryPolicy};

/// Who wrote.
enum Party {
    Retailer(parties::Retailer),
    Vendor(parties::Vendor),
    Unknown,
}

/// The short reference of an order or a vendor part in messages: the last six hex digits of
/// its id, upper-case. Looked up only among the writer's own orders or parts.
pub fn short_ref(id: Uuid) -> String {
    let hex = id.simple().to_string();
    hex[hex.len() - 6..].to_uppercase()
}

fn matches_ref(id: Uuid, reference: &str) -> bool {
    let r = reference.trim().to_uppercase();
    r.len() >= 4 && id.simple().to_string().to_uppercase().ends_with(&r)
}

fn reply(template: &'static str, vars: Value) -> Reply {
    Reply { template, vars }
}

/// Handles inbound message `id` (see the module docs).
#[tracing::instrument(skip_all, fields(inbound_id = %id))]
pub async fn handle(ctx: &JobContext, id: Uuid) -> Result<(), JobError> {
    let app = &ctx.app;
    let (msg, earlier) = repo::inbound_with_earlier(app.db(), id).await?;
    let Some(msg) = msg else {
        return Err(JobError::Permanent(anyhow::anyhow!(
            "inbound message {id} does not exist"
        )));
    };
    if msg.status != "received" {
        return Ok(());
    }
    // A phone's messages are handled in the order they arrived: earlier ones whose jobs have
    // not run yet (another worker is slow, or their retry waits) are handled first, here;
    // their own jobs then find them done.
    for m in earlier {
        handle_one(ctx, m, false).await?;
    }
    handle_one(ctx, msg, true).await
}

/// Handles one stored message; `own` when it is this job's (the job completes with it).
async fn handle_one(ctx: &JobContext, msg: InboundRow, own: bool) -> Result<(), JobError> {
    let app = &ctx.app;
    let id = msg.id;
    let now = app.clock().now_ms();
    let found = repo::conversation(app.db(), &msg.from_phone).await?;
    let seen = found.as_ref().map(|c| c.updated_at_ms);
    let mut conv = found.unwrap_or_else(|| ConversationRow {
        phone: msg.from_phone.clone(),
        language: Language::En.as_str().into(),
        state: None,
        expires_at_ms: None,
        unknown_alerted_at_ms: None,
        updated_at_ms: now,
    });
    if is_devanagari(&msg.body) {
        conv.language = Language::Ne.as_str().into();
    } else if msg.body.chars().any(|c| c.is_ascii_alphabetic()) {
        conv.language = Language::En.as_str().into();
    }
    let expired = conv.expires_at_ms.is_some_and(|at| now >= at);
    let mut state: Option<Draft> = conv
        .state
        .as_ref()
        .filter(|_| !expired)
        .and_then(|s| serde_json::from_value(s.0.clone()).ok());
    let channel = MessageChannel::parse(&msg.channel).unwrap_or(MessageChannel::Sms);
    let mut alert = false;
    // What the replies are written in: a party's own setting, else the language it writes in
    // (as its notifications).
    let mut lang = Language::parse(&conv.language);
    let replies = match who(app, &msg.from_phone).await? {
        Party::Unknown => {
            alert = conv.unknown_alerted_at_ms.is_none();
            conv.unknown_alerted_at_ms.get_or_insert(now);
            vec![reply("unknown_sender", json!({}))]
        }
        Party::Retailer(r) => {
            // The retailer's own setting, else the language it writes in.
            lang = Language::parse(r.language.as_deref().unwrap_or(&conv.language));
            let mut talk = Retailer {
                app,
                retailer: &r,
                msg: &msg,
                channel,
                lang,
                now,
                expired,
            };
            talk.answer(&mut state).await?
        }
        Party::Vendor(v) => {
            lang = Language::parse(v.language.as_deref().unwrap_or(&conv.language));
            vendor(app, &v, &msg, lang, now).await?
        }
    };
    let ttl = app.settings().channels.draft_ttl_minutes * 60_000;
    conv.expires_at_ms = state.as_ref().map(|_| now + ttl);
    conv.state = match &state {
        Some(d) => Some(Json(serde_json::to_value(d).map_err(anyhow::Error::from)?)),
        None => None,
    };
    // Strictly increasing, so the conditional save sees every change.
    conv.updated_at_ms = now.max(seen.map_or(now, |s| s + 1));
    let mut tx = app.db().begin().await?;
    if !repo::mark_processed(&mut tx, id, now).await? {
        return Ok(());
    }
    if own {
        ctx.complete_in(&mut tx).await?;
    }
    if !repo::save_conversation(&mut tx, &conv, seen).await? {
        return Err(JobError::Retryable(anyhow::anyhow!(
            "the conversation with this phone changed meanwhile"
        )));
    }
    let send_now = outbox::configured(&app.settings().channels);
    for r in &replies {
        outbox::queue(
            &mut tx,
            &msg.from_phone,
            channel,
            lang,
            r,
            Some(id),
            now,
            send_now,
        )
        .await?;
    }
    if alert {
        let a = NewAlert {
            kind: "unknown_sender",
            severity: "info",
            subject: "inbound_message",
            subject_id: id,
            message: format!(
                "a message came from {}, which is no retailer or vendor",
                msg.from_phone
            ),
            detail: json!({ "phone": msg.from_phone, "channel": channel.as_str(), "body": msg.body }),
            at_ms: now,
        };
        alerts::raise(&mut tx, &a).await?;
    }
    tx.commit().await?;
    Ok(())
}

async fn who(app: &App, phone: &str) -> Result<Party, sqlx::Error> {
    if let Some(r) = parties::find_retailer_by_phone(app.db(), phone).await? {
        return Ok(Party::Retailer(r));
    }
    if let Some(v) = parties::find_vendor_by_phone(app.db(), phone).await? {
        return Ok(Party::Vendor(v));
    }
    Ok(Party::Unknown)
}

/// A retailer's message in its conversation.
struct Retailer<'a> {
    app: &'a App,
    retailer: &'a parties::Retailer,
    msg: &'a InboundRow,
    channel: MessageChannel,
    lang: Language,
    now: i64,
    /// A draft was pending but its time ran out.
    expired: bool,
}

impl Retailer<'_> {
    fn actor(&self) -> Actor {
        Actor {
            id: format!("phone:{}", self.msg.from_phone),
            role: "retailer",
        }
    }

    async fn answer(&mut self, state: &mut Option<Draft>) -> Result<Vec<Reply>, JobError> {
        let text = self.msg.body.as_str();
        let intent = classify(text);
        if let Some(d) = state.as_mut()
            && let Some(q) = d.questions.first().cloned()
        {
            match (&intent, &q) {
                (Intent::No, _)
                    if bare_number(text).is_none() || matches!(q, Question::Item { .. }) =>
                {
                    *state = None;
                    return Ok(vec![reply("draft_cancelled", json!({}))]);
                }
                (Intent::Skip, _) => {
                    d.questions.remove(0);
                    return self.next_step(state).await;
                }
                (Intent::Text | Intent::Yes | Intent::No, _) => {
                    return self.clarify(state, q).await;
                }
                _ => {}
            }
        } else if state.is_some() {
            match intent {
                Intent::Yes => return self.place(state).await,
                Intent::No => {
                    *state = None;
                    return Ok(vec![reply("draft_cancelled", json!({}))]);
                }
                _ => {}
            }
        }
        match intent {
            Intent::Greeting => Ok(vec![reply(
                "greeting",
                json!({ "name": self.retailer.name }),
            )]),
            Intent::Thanks => Ok(vec![reply("thanks", json!({ "name": self.retailer.name }))]),
            Intent::Help => Ok(vec![reply("help_retailer", json!({}))]),
            Intent::Yes | Intent::No | Intent::Skip if self.expired => {
                Ok(vec![reply("draft_expired", json!({}))])
            }
            Intent::Yes | Intent::No | Intent::Skip => {
                Ok(vec![reply("nothing_pending", json!({}))])
            }
            Intent::Status(r) => self.status(r.as_deref()).await,
            Intent::Received(r) => self.act_on_order(&r, Action::Confirm, None).await,
            Intent::Issue(r, None) => Ok(vec![reply("issue_needs_reason", json!({ "ref": r }))]),
            Intent::Issue(r, Some(why)) => {
                self.act_on_order(&r, Action::ReportIssue, Some(&why)).await
            }
            Intent::Cancel(r, why) => self.act_on_order(&r, Action::Cancel, why.as_deref()).await,
            Intent::Accept(_) | Intent::Reject(..) => Ok(vec![reply("help_retailer", json!({}))]),
            Intent::Text => self.new_order(state).await,
        }
    }

    /// A new order message: parsed into a fresh draft (replacing any pending one).
    async fn new_order(&mut self, state: &mut Option<Draft>) -> Result<Vec<Reply>, JobError> {
        let understood = draft::understand(self.app, &self.msg.body).await?;
        if understood.lines.is_empty() && understood.questions.is_empty() {
            let template = if self.expired {
                "draft_expired"
            } else {
                "not_understood"
            };
            return Ok(vec![reply(template, json!({}))]);
        }
        *state = Some(Draft {
            id: Uuid::now_v7(),
            lines: understood.lines,
            questions: understood.questions,
        });
        self.next_step(state).await
    }

    /// The answer to the open question `q`.
    async fn clarify(
        &mut self,
        state: &mut Option<Draft>,
        q: Question,
    ) -> Result<Vec<Reply>, JobError> {
        let text = self.msg.body.as_str();
        let Some(d) = state.as_mut() else {
            return Ok(Vec::new());
        };
        let mut answered: Option<Vec<DraftLine>> = None;
        if let Question::Quantity { sku, name, unit } = &q
            && let Some(qty) = bare_number(text)
            && let Some(line) = draft::answer_quantity(self.app, sku, name, unit, qty).await?
        {
            answered = Some(vec![line]);
        }
        if answered.is_none() {
            let understood = draft::understand(self.app, text).await?;
            if !understood.lines.is_empty() {
                answered = Some(understood.lines);
            }
        }
        let Some(lines) = answered else {
            let (template, vars) = q.ask();
            let question = render(self.lang, template, &vars);
            return Ok(vec![reply(
                "clarify_again",
                json!({ "question": question }),
            )]);
        };
        draft::merge(&mut d.lines, lines);
        d.questions.remove(0);
        self.next_step(state).await
    }

    /// The next open question, or the priced summary.
    async fn next_step(&mut self, state: &mut Option<Draft>) -> Result<Vec<Reply>, JobError> {
        let Some(d) = state.as_ref() else {
            return Ok(Vec::new());
        };
        if let Some(q) = d.questions.first() {
            let (template, vars) = q.ask();
            return Ok(vec![reply(template, vars)]);
        }
        if d.lines.is_empty() {
            *state = None;
            return Ok(vec![reply("draft_empty", json!({}))]);
        }
        let (lines, total) = draft::price(self.app, &d.lines, self.now).await?;
        let minutes = self.app.settings().channels.draft_ttl_minutes;
        Ok(vec![reply(
            "draft_summary",
            json!({ "lines": lines, "total": khaacho_credit::npr(total), "minutes": minutes }),
        )])
    }

    /// YES: the draft becomes an order through the intake, once (its id is the key).
    async fn place(&mut self, state: &mut Option<Draft>) -> Result<Vec<Reply>, JobError> {
        let Some(d) = state.clone() else {
            return Ok(Vec::new());
        };
        let body = CreateOrder {
            retailer_id: None,
            lines: Some(d.lines.iter().map(draft::input_of).collect()),
            text: None,
            note: None,
            priority: None,
            payment_mode: None,
        };
        let req = OrderRequest {
            retailer_id: self.retailer.id,
            body,
            channel: self.channel.order_channel(),
            actor: self.actor(),
            idempotency_key: Some(format!("chat-draft:{}", d.id)),
            correlation_id: Some(format!("inbound:{}", self.msg.id)),
        };
        match self.app.intake().accept(req).await {
            Ok(res) => {
                *state = None;
                let (_, total) = draft::price(self.app, &d.lines, self.now).await?;
                // In safe mode the order is stored but waits: say so.
                let template = if self.app.mode().safe_mode() {
                    "order_placed_safe_mode"
                } else {
                    "order_placed"
                };
                Ok(vec![reply(
                    template,
                    json!({ "ref": short_ref(res.accepted.order_id), "total": khaacho_credit::npr(total) }),
                )])
            }
            Err(IntakeError::Invalid(errors)) => {
                *state = None;
                let reason = errors
                    .into_iter()
                    .map(|e| e.message)
                    .collect::<Vec<_>>()
                    .join("; ");
                Ok(vec![reply("order_refused", json!({ "reason": reason }))])
            }
            // Overloaded, a racing run, the database: the job retries; the draft waits.
            Err(e) => Err(JobError::Retryable(anyhow::anyhow!(
                "placing the draft: {e}"
            ))),
        }
    }

    async fn find_order(
        &self,
        reference: &str,
        limit: i64,
    ) -> Result<Vec<crate::orders::model::OrderRow>, sqlx::Error> {
        let f = orders::ListFilter {
            limit,
            ..Default::default()
        };
        let mine = orders::list(self.app.db(), Scope::Retailer(self.retailer.id), &f).await?;
        Ok(mine
            .into_iter()
            .filter(|o| reference.is_empty() || matches_ref(o.id, reference))
            .collect())
    }

    async fn status(&self, reference: Option<&str>) -> Result<Vec<Reply>, JobError> {
        let found = self.find_order(reference.unwrap_or(""), 200).await?;
        if found.is_empty() {
            return Ok(vec![match reference {
                Some(r) => reply("ref_unknown", json!({ "ref": r })),
                None => reply("status_none", json!({})),
            }]);
        }
        let lines: Vec<String> = found
            .iter()
            .take(5)
            .map(|o| {
                let total = o
                    .total_paisa
                    .map_or_else(|| "-".to_string(), khaacho_credit::npr);
                format!(
                    "{} - {} - {total} ({})",
                    short_ref(o.id),
                    status_word(self.lang, o.status()),
                    fmt_short(o.created_at_ms)
                )
            })
            .collect();
        Ok(vec![reply(
            "status_list",
            json!({ "orders": lines.join("\n") }),
        )])
    }

    async fn act_on_order(
        &self,
        reference: &str,
        action: Action,
        why: Option<&str>,
    ) -> Result<Vec<Reply>, JobError> {
        let found = self.find_order(reference, 200).await?;
        let [order] = found.as_slice() else {
            return Ok(vec![reply("ref_unknown", json!({ "ref": reference }))]);
        };
        let r = short_ref(order.id);
        let scope = Scope::Retailer(self.retailer.id);
        match actions::apply(
            self.app,
            scope,
            order.id,
            action,
            &self.actor(),
            why,
            None,
            None,
        )
        .await
        {
            Ok(_) if action == Action::Confirm => {
                Ok(vec![reply("receipt_confirmed", json!({ "ref": r }))])
            }
            // The order's own message (`order_cancelled`) tells the retailer.
            Ok(_) if action == Action::Cancel => Ok(Vec::new()),
            Ok(_) => Ok(vec![reply("issue_reported", json!({ "ref": r }))]),
            Err(ActionError::NotFound) => {
                Ok(vec![reply("ref_unknown", json!({ "ref": reference }))])
            }
            Err(ActionError::Illegal(reason)) => Ok(vec![reply(
                "action_refused",
                json!({ "ref": r, "reason": reason }),
            )]),
            Err(ActionError::Invalid(errors)) => {
                let reason = errors
                    .into_iter()
                    .map(|e| e.message)
                    .collect::<Vec<_>>()
                    .join("; ");
                Ok(vec![reply(
                    "action_refused",
                    json!({ "ref": r, "reason": reason }),
                )])
            }
            Err(ActionError::Storage(e)) => Err(e.into()),
        }
    }
}

/// Where an accepted part goes, for its vendor: the shop, its address and district, its phone.
fn deliver_to(shop: &parties::Retailer) -> String {
    let mut at = vec![shop.name.as_str()];
    at.extend(shop.address.as_deref().filter(|a| !a.trim().is_empty()));
    at.push(&shop.district);
    at.push(&shop.phone);
    at.join(", ")
}

/// A vendor's message: accept or reject an offer by its reference, give back an accepted part
/// (CANCEL), or list the open offers.
async fn vendor(
    app: &App,
    v: &parties::Vendor,
    msg: &InboundRow,
    lang: Language,
    now: i64,
) -> Result<Vec<Reply>, JobError> {
    let actor = Actor {
        id: format!("phone:{}", msg.from_phone),
        role: "vendor",
    };
    let (reference, action, why) = match classify(&msg.body) {
        Intent::Accept(r) => (r, PartAction::Accept, None),
        Intent::Reject(r, None) => {
            return Ok(vec![reply("reject_needs_reason", json!({ "ref": r }))]);
        }
        Intent::Reject(r, Some(why)) => (r, PartAction::Reject, Some(why)),
        Intent::Cancel(r, None) => {
            return Ok(vec![reply("cancel_needs_reason", json!({ "ref": r }))]);
        }
        Intent::Cancel(r, Some(why)) => (r, PartAction::Cancel, Some(why)),
        Intent::Greeting => return Ok(vec![reply("greeting", json!({ "name": v.name }))]),
        Intent::Thanks => return Ok(vec![reply("thanks", json!({ "name": v.name }))]),
        Intent::Status(_) => return open_offers(app, v, lang, now).await,
        _ => return Ok(vec![reply("help_vendor", json!({}))]),
    };
    let mine = parts::list(app.db(), Some(v.id), None, None, 500).await?;
    let found: Vec<_> = mine
        .iter()
        .filter(|p| matches_ref(p.id, &reference))
        .collect();
    let [part] = found.as_slice() else {
        return Ok(vec![reply("ref_unknown", json!({ "ref": reference }))]);
    };
    let r = short_ref(part.id);
    let acting = Acting {
        vendor: Some(v.id),
        actor: &actor,
        reason: why.as_deref(),
        audit: None,
    };
    let accepted = matches!(action, PartAction::Accept);
    let given_back = matches!(action, PartAction::Cancel);
    match act(app, part, &acting, action).await {
        Ok(acted) if accepted => {
            let to = parties::find_retailer(app.db(), acted.part.retailer_id).await?;
            let deliver_to = to.as_ref().map(deliver_to).unwrap_or_default();
            Ok(vec![reply(
                "offer_accepted",
                json!({ "ref": r, "deliver_to": deliver_to }),
            )])
        }
        Ok(acted) if given_back => {
            // No vendor left to ask: the part waits for an operator (who is alerted), and
            // the vendor is not promised another vendor.
            let key = if acted.part.status() == PartStatus::Unassigned {
                "part_given_back_held"
            } else {
                "part_given_back"
            };
            Ok(vec![reply(key, json!({ "ref": r }))])
        }
        Ok(_) => Ok(vec![reply("offer_rejected", json!({ "ref": r }))]),
        Err(FulfilmentError::NotFound) => {
            Ok(vec![reply("ref_unknown", json!({ "ref": reference }))])
        }
        Err(FulfilmentError::Storage(e)) => Err(e.into()),
        Err(FulfilmentError::Invalid(errors)) => {
            let reason = errors
                .into_iter()
                .map(|e| e.message)
                .collect::<Vec<_>>()
                .join("; ");
            Ok(vec![reply(
                "action_refused",
                json!({ "ref": r, "reason": reason }),
            )])
        }
        Err(other) => Ok(vec![reply(
            "action_refused",
            json!({ "ref": r, "reason": other.to_string() }),
        )]),
    }
}

async fn open_offers(
    app: &App,
    v: &parties::Vendor,
    lang: Language,
    now: i64,
) -> Result<Vec<Reply>, JobError> {
    let open = parts::list(app.db(), Some(v.id), Some("offered"), None, 20).await?;
    let open: Vec<_> = open
        .iter()
        .filter(|p| p.deadline_ms.is_none_or(|d| d > now))
        .collect();
    if open.is_empty() {
        return Ok(vec![reply("vendor_no_offers", json!({}))]);
    }
    let shops: Vec<Uuid> = open.iter().map(|p| p.retailer_id).collect();
    let shops = parties::find_retailers(&mut Reader::Pool(app.db()), &shops).await?;
    let lines: Vec<String> = open
        .iter()
        .map(|p| {
            let shop = shops
                .iter()
                .find(|s| s.id == p.retailer_id)
                .map(|s| format!("{}, {} - ", s.name, s.district))
                .unwrap_or_default();
            let vars = json!({
                "ref": short_ref(p.id),
                "shop": shop,
                "total": khaacho_credit::npr(p.total_paisa),
                "by": p.deadline_ms.map(fmt_short).unwrap_or_default(),
            });
            render(lang, "vendor_offer_line", &vars)
        })
        .collect();
    Ok(vec![reply(
        "vendor_offers",
        json!({ "offers": lines.join("\n") }),
    )])
}

/// Job: handle one inbound message (enqueued by the webhook with the stored message).
#[derive(Debug, Serialize, Deserialize)]
pub struct HandleInbound {
    /// The stored message.
    pub id: Uuid,
}

impl Job for HandleInbound {
    type Host = App;
    const KIND: &'static str = "channels.inbound";
    const QUEUE: &'static str = "inbound";
    const PRIORITY: Priority = Priority::High;
    // Handling runs behind the webhook, which must answer Twilio at once whatever the
    // backlog: a few handlers at a time keep up with a steady 200 messages/s per process
    // and leave the CPU to the webhooks in a burst (eight side by side took it all and the
    // webhooks' p99 went from 25 ms to 500 ms at 2,000/s). More processes handle more.
    const CONCURRENCY: usize = 3;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 8,
            timeout: std::time::Duration::from_secs(60),
        }
    }

    async fn run(self, ctx: JobContext) -> Result<(), JobError> {
        handle(&ctx, self.id).await
    }

    async fn on_dead(self, ctx: JobContext, error: String) -> anyhow::Result<()> {
        // Out of the way of the phone's later messages, and visible to operators.
        tracing::error!(inbound_id = %self.id, %error, "an inbound message could not be handled");
        repo::mark_failed(ctx.app.db(), self.id, ctx.app.clock().now_ms()).await?;
        Ok(())
    }
}
