//! Channels over HTTP: Twilio's inbound-message and status-callback webhooks (signed with
//! `X-Twilio-Signature`, no bearer token), and the staff's view of the outbox.
//!
//! The inbound webhook stores the raw message and enqueues its handling in one transaction
//! (a group commit shared with the other webhooks of that moment: `super::inbound`), then
//! answers `200` with empty TwiML; it never does business work inline. A
//! retried webhook (same `MessageSid`) stores nothing new and still gets `200`.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::inbound::Received;
use super::outbox::SendMessage;
use super::phone::{self, MessageChannel};
use super::repo::{self, NewInbound, OutboundFilter, OutboundRow};
use crate::app::App;
use crate::base::audit;
use crate::base::principal::{Principal, STAFF};
use crate::base::time::fmt_time;
use crate::base::wire::error::{ApiError, FieldError, Problem};
use crate::base::wire::extract::{Path, Query};
use crate::base::wire::{Page, page_limit, split_page};
use crate::config::Settings;
use crate::orders::intake::MAX_TEXT_CHARS;
use crate::queue::{EnqueueOptions, enqueue};

/// Where Twilio posts inbound messages.
pub const MESSAGES_PATH: &str = "/api/v1/channels/twilio/messages";
/// Where Twilio posts delivery status changes.
pub const STATUS_PATH: &str = "/api/v1/channels/twilio/status";

/// The empty TwiML answer: nothing is said inline; replies go through the outbox.
pub const EMPTY_TWIML: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>";

/// Routes of the channels.
pub fn router() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(twilio_message))
        .routes(routes!(twilio_status))
        .routes(routes!(list_messages))
        .routes(routes!(retry_message))
}

/// The public URL Twilio signs for `path`: `channels.public_url`, else `http://{listen}`.
pub fn public_url(settings: &Settings, path: &str) -> String {
    match &settings.channels.public_url {
        Some(base) => format!("{}{path}", base.trim_end_matches('/')),
        None => format!("http://{}{path}", settings.listen),
    }
}

fn twiml() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        EMPTY_TWIML,
    )
        .into_response()
}

/// Reads a signed Twilio form post: size, content type and signature, in that order.
/// A refused signature is a 403, audited (`authz.denied`) by the security middleware.
fn verified_form(
    app: &App,
    path: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Vec<(String, String)>, ApiError> {
    let s = &app.settings().channels;
    if body.len() > s.max_body_bytes {
        return Err(ApiError::BadRequest(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("a webhook body may have at most {} bytes", s.max_body_bytes),
        ));
    }
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    if !form {
        return Err(ApiError::BadRequest(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected application/x-www-form-urlencoded".into(),
        ));
    }
    let Some(token) = s.twilio_auth_token.as_deref() else {
        return Err(ApiError::Forbidden(
            "Twilio webhooks are refused: channels.twilio_auth_token is not configured".into(),
        ));
    };
    let Some(signature) = headers
        .get(khaacho_auth::webhook::TWILIO_SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
    else {
        return Err(ApiError::Forbidden("missing X-Twilio-Signature".into()));
    };
    let params: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    let url = public_url(app.settings(), path);
    if !khaacho_auth::webhook::verify_twilio(token, &url, &params, signature) {
        return Err(ApiError::Forbidden("invalid X-Twilio-Signature".into()));
    }
    Ok(params)
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// An inbound message's fields, checked.
struct Inbound<'a> {
    sid: &'a str,
    channel: MessageChannel,
    phone: String,
    body: &'a str,
}

fn check_inbound(params: &[(String, String)]) -> Result<Inbound<'_>, ApiError> {
    let mut errors = Vec::new();
    let sid = param(params, "MessageSid")
        .or_else(|| param(params, "SmsSid"))
        .unwrap_or("");
    if sid.is_empty() || sid.len() > 64 {
        errors.push(FieldError::new(
            "MessageSid",
            "MessageSid is required (at most 64 characters)",
        ));
    }
    let from = match param(params, "From") {
        None | Some("") => {
            errors.push(FieldError::new("From", "From is required"));
            None
        }
        Some(f) => {
            let parsed = phone::normalise(f);
            if parsed.is_none() {
                errors.push(FieldError::new("From", "From is not a phone number"));
            }
            parsed
        }
    };
    let body = param(params, "Body").unwrap_or("");
    if body
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        errors.push(FieldError::new(
            "Body",
            "Body may hold no control characters but tab and line breaks",
        ));
    }
    if body.chars().count() > MAX_TEXT_CHARS {
        errors.push(FieldError::new(
            "Body",
            format!("Body may have at most {MAX_TEXT_CHARS} characters"),
        ));
    }
    match from {
        Some((channel, phone)) if errors.is_empty() => Ok(Inbound {
            sid,
            channel,
            phone,
            body,
        }),
        _ => Err(ApiError::Validation(errors)),
    }
}

/// Twilio's inbound-message webhook (WhatsApp or SMS; form-encoded, signed).
#[utoipa::path(post, path = "/channels/twilio/messages", tag = "channels", security(()),
    request_body(content = String, content_type = "application/x-www-form-urlencoded",
        description = "Twilio's parameters: MessageSid, From (`whatsapp:+977…` or `+977…`), To, Body, NumMedia, …"),
    responses((status = 200, description = "Stored (or stored before); empty TwiML", content_type = "text/xml"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn twilio_message(
    State(app): State<App>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = verified_form(&app, MESSAGES_PATH, &headers, &body)?;
    let m = check_inbound(&params)?;
    let id = Uuid::now_v7();
    let num_media = param(&params, "NumMedia")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let all: serde_json::Map<String, serde_json::Value> = params
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    let message = NewInbound {
        id,
        provider_message_id: m.sid.to_owned(),
        channel: m.channel.as_str(),
        from_phone: m.phone,
        to_address: param(&params, "To").map(str::to_owned),
        body: m.body.to_owned(),
        num_media,
        params: serde_json::Value::Object(all),
        at_ms: app.clock().now_ms(),
    };
    let trace_parent = crate::base::trace::parent_for(None);
    app.inbound_messages()
        .write(Received {
            message,
            trace_parent,
        })
        .await?;
    Ok(twiml())
}

/// Twilio's status callback: moves an outbound message to `sent`, `delivered` or `failed`;
/// a terminal status (`delivered`, `failed`, `dead`) is never overwritten by a late one.
#[utoipa::path(post, path = "/channels/twilio/status", tag = "channels", security(()),
    request_body(content = String, content_type = "application/x-www-form-urlencoded",
        description = "Twilio's parameters: MessageSid, MessageStatus, ErrorCode, …"),
    responses((status = 200, description = "Applied (or ignored as late)", content_type = "text/xml"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn twilio_status(
    State(app): State<App>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = verified_form(&app, STATUS_PATH, &headers, &body)?;
    let (Some(sid), Some(status)) = (
        param(&params, "MessageSid").filter(|s| !s.is_empty()),
        param(&params, "MessageStatus").filter(|s| !s.is_empty()),
    ) else {
        return Err(ApiError::field(
            "MessageStatus",
            "MessageSid and MessageStatus are required",
        ));
    };
    let (to, from): (&str, &[&str]) = match status {
        "sent" => ("sent", &["sending"]),
        "delivered" | "read" => ("delivered", &["sending", "sent"]),
        "failed" | "undelivered" => ("failed", &["sending", "sent"]),
        // queued, accepted, sending, scheduled…: nothing we do not know already.
        _ => return Ok(twiml()),
    };
    let error = param(&params, "ErrorCode").map(|c| format!("Twilio error {c} ({status})"));
    let now = app.clock().now_ms();
    repo::apply_callback(app.db(), sid, to, from, error.as_deref(), now).await?;
    Ok(twiml())
}

/// Filters of the outbox list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct MessageParams {
    /// Only to this phone (any Nepal format; normalised to E.164) or e-mail address.
    pub recipient: Option<String>,
    /// Only in this status: `queued`, `sending`, `sent`, `delivered`, `failed`, `dead`.
    pub status: Option<String>,
    /// Only messages written after this one, oldest first (for polling a conversation).
    pub after: Option<Uuid>,
    /// Page size, 1–200 (default 50).
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page (newest-first listing).
    pub cursor: Option<Uuid>,
}

/// An outbound message.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MessageView {
    /// Id.
    pub id: Uuid,
    /// E.164.
    pub recipient: String,
    /// `whatsapp`, `sms` or `email`.
    pub channel: String,
    /// Template name.
    pub template: String,
    /// Its variables.
    #[schema(value_type = Object)]
    pub vars: serde_json::Value,
    /// `en` or `ne`.
    pub language: String,
    /// The text.
    pub body: String,
    /// `queued`, `sending`, `sent`, `delivered`, `failed`, `dead`.
    pub status: String,
    /// Send attempts so far.
    pub attempts: i32,
    /// When the next attempt is due (Nepal time).
    pub next_attempt_at: String,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// Twilio's SID.
    pub provider_sid: Option<String>,
    /// The inbound message it answers.
    pub inbound_id: Option<Uuid>,
    /// Written (Nepal time).
    pub created_at: String,
}

impl From<OutboundRow> for MessageView {
    fn from(m: OutboundRow) -> Self {
        MessageView {
            id: m.id,
            recipient: m.recipient,
            channel: m.channel,
            template: m.template,
            vars: m.vars.0,
            language: m.language,
            body: m.body,
            status: m.status,
            attempts: m.attempts,
            next_attempt_at: fmt_time(m.next_attempt_at_ms),
            last_error: m.last_error,
            provider_sid: m.provider_sid,
            inbound_id: m.inbound_id,
            created_at: fmt_time(m.created_at_ms),
        }
    }
}

const STATUSES: [&str; 6] = ["queued", "sending", "sent", "delivered", "failed", "dead"];

/// The outbox (staff): newest first, or oldest first after a message (`after`).
#[utoipa::path(get, path = "/channels/messages", tag = "channels", params(MessageParams),
    responses((status = 200, body = Page<MessageView>),
        (status = 400, body = Problem, content_type = "application/problem+json")))]
async fn list_messages(
    State(app): State<App>,
    principal: Principal,
    Query(p): Query<MessageParams>,
) -> Result<axum::Json<Page<MessageView>>, ApiError> {
    principal.require(STAFF)?;
    let limit = page_limit(p.limit)?;
    let recipient =
        match p.recipient.as_deref() {
            None => None,
            // An e-mail address (the `email` channel) as it is.
            Some(r) if r.contains('@') => Some(r.trim().to_string()),
            Some(r) => Some(phone::e164(r).ok_or_else(|| {
                ApiError::param("recipient", "not a phone number or e-mail address")
            })?),
        };
    if let Some(s) = p.status.as_deref()
        && !STATUSES.contains(&s)
    {
        return Err(ApiError::param(
            "status",
            format!("status must be one of {}", STATUSES.join(", ")),
        ));
    }
    if p.after.is_some() && p.cursor.is_some() {
        return Err(ApiError::param("cursor", "give after or cursor, not both"));
    }
    let f = OutboundFilter {
        recipient: recipient.as_deref(),
        status: p.status.as_deref(),
        after: p.after,
        before: p.cursor,
        limit: limit + 1,
    };
    let rows = repo::list_outbound(app.db(), &f).await?;
    let (rows, next) = split_page(rows, limit, |m| m.id.to_string());
    Ok(axum::Json(Page {
        items: rows.into_iter().map(MessageView::from).collect(),
        next_cursor: next,
    }))
}

/// Put a `dead` or `failed` message back in the queue (staff; audited).
#[utoipa::path(post, path = "/channels/messages/{id}/retry", tag = "channels",
    params(("id" = Uuid, Path, description = "Message id")),
    responses((status = 200, body = MessageView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json")))]
async fn retry_message(
    State(app): State<App>,
    principal: Principal,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<MessageView>, ApiError> {
    principal.require(STAFF)?;
    let Some(before) = repo::find_outbound(app.db(), id).await? else {
        return Err(ApiError::NotFound("message"));
    };
    let now = app.clock().now_ms();
    let mut tx = app.db().begin().await?;
    if !repo::requeue(&mut tx, id, now).await? {
        return Err(ApiError::Conflict(format!(
            "only dead or failed messages can be retried; this one is {}",
            before.status
        )));
    }
    enqueue(&mut tx, &SendMessage { id }, EnqueueOptions::default()).await?;
    let entry = principal
        .audit("message.retry")
        .on("outbound_message", id)
        .summary(serde_json::json!({ "from": before.status, "attempts": before.attempts }));
    audit::record_tx(&mut tx, &entry).await?;
    tx.commit().await?;
    let after = repo::find_outbound(app.db(), id)
        .await?
        .ok_or(ApiError::NotFound("message"))?;
    Ok(axum::Json(after.into()))
}
