//! WhatsApp and SMS conversations through Twilio (DOMAIN.md "Channels", DESIGN §13).
//!
//! Inbound: `routes` verifies the webhook's signature and hands the raw message to the group
//! commit of `inbound`, which stores it (unique on Twilio's `MessageSid`) and enqueues
//! `channels.inbound` in one transaction with the other webhooks' messages of that moment; the
//! webhook answers once that commit is done. The job (`service::conversation`) works out who
//! wrote (`phone`: E.164, then the retailer or vendor with that phone), what they ask
//! (`intents`) and what it does in their conversation: an order becomes a draft
//! (`service::draft`: the text-order parser, one clarification question per unclear line, a
//! priced summary) that YES places through the same intake as the API; vendors accept or reject
//! offers by their short reference; retailers ask for status, confirm receipt or report an
//! issue.
//!
//! Outbound: every reply is a row of the outbox (`outbox`), rendered from the template
//! files (`templates`), written in the transaction of what caused it and sent by a job.

pub mod chat;
pub mod credit_notices;
pub mod flood;
pub mod inbound;
pub mod intents;
pub mod notify;
pub mod outbox;
pub mod phone;
pub mod repo;
pub mod routes;
pub mod service;
pub mod templates;
