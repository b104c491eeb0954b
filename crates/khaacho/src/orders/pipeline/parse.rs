//! Text orders: the parse step turns the retailer's words into order lines with the agent
//! chain (LLM providers when switched on, the offline parser always). Anything the parser is
//! unsure of holds the order for an operator (`parse_review`), who approves it with corrected
//! lines or rejects it.

use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use super::super::intake::{CheckedLine, IntakeError, LineInput, check_text};
use super::super::model::{Actor, OrderStatus};
use super::super::repo;
use super::super::transition;
use super::continue_after;
use crate::app::{App, JobContext};
use crate::base::scope::Scope;
use crate::base::wire::error::FieldError;
use crate::queue::{Job, JobError, Priority, RetryPolicy};

/// Items parsed with less confidence than this are reviewed by a person.
pub const REVIEW_BELOW_CONFIDENCE: f32 = 0.7;

/// One understood item.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ParsedLine {
    /// Catalogue SKU.
    pub sku: String,
    /// Quantity; `null` when the quantity is what is unclear, or for a money amount.
    pub qty: Option<f64>,
    /// Canonical unit.
    pub unit: Option<String>,
    /// "Rs 500 worth of sugar": the amount to spend.
    pub amount_npr: Option<f64>,
    /// 0..1.
    pub confidence: f32,
    /// Byte range of the item in the text.
    pub span: (usize, usize),
}

/// Something the parser could not settle.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ParseFlag {
    /// `unknown_item`, `ambiguous_item`, `ambiguous_quantity`, `invalid_quantity`, `absurd_quantity`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The words concerned.
    pub text: String,
}

/// What a text means as an order.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ParseResult {
    /// Which agent answered (`local`, `openai`, `anthropic`).
    pub agent: String,
    /// Understood items.
    pub items: Vec<ParsedLine>,
    /// Problems.
    pub flags: Vec<ParseFlag>,
    /// Whether an order from this text would be held for a person.
    pub needs_review: bool,
}

/// Parses `text` against the current catalogue.
pub async fn parse_text(app: &App, text: &str) -> Result<ParseResult, sqlx::Error> {
    let catalog = app.catalog().parser(app.db()).await?;
    // A degraded platform spares the LLM providers: the offline parser answers.
    let answer = app
        .agents()
        .parse_within(&catalog, text, app.mode().llm_allowed())
        .await;
    let items: Vec<ParsedLine> = answer
        .outcome
        .items
        .iter()
        .map(|i| ParsedLine {
            sku: i.sku.clone(),
            qty: i.qty,
            unit: i.unit.map(|u| u.as_str().to_string()),
            amount_npr: i.amount_npr,
            confidence: i.confidence,
            span: i.span,
        })
        .collect();
    let flags: Vec<ParseFlag> = answer
        .outcome
        .flags
        .iter()
        .map(|f| ParseFlag {
            kind: serde_json::to_value(f.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            text: f.text.clone(),
        })
        .collect();
    let needs_review = items.is_empty()
        || !flags.is_empty()
        || items
            .iter()
            .any(|i| i.qty.is_none() || i.unit.is_none() || i.confidence < REVIEW_BELOW_CONFIDENCE);
    Ok(ParseResult {
        agent: answer.agent.to_string(),
        items,
        flags,
        needs_review,
    })
}

/// Job: parse a text order into lines.
#[derive(Debug, Serialize, Deserialize)]
pub struct ParseOrder {
    /// The order.
    pub order_id: Uuid,
}

impl Job for ParseOrder {
    type Host = App;
    const KIND: &'static str = "order.parse";
    const QUEUE: &'static str = "orders";
    const PRIORITY: Priority = Priority::Normal;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 10,
            timeout: std::time::Duration::from_secs(60),
        }
    }

    #[tracing::instrument(skip_all, fields(order_id = %self.order_id))]
    async fn run(self, ctx: JobContext) -> Result<(), JobError> {
        let app = &ctx.app;
        let Some(order) = repo::find(app.db(), Scope::All, self.order_id).await? else {
            return Err(JobError::Permanent(anyhow::anyhow!(
                "order {} does not exist",
                self.order_id
            )));
        };
        if order.status() != OrderStatus::Received {
            return Ok(());
        }
        let Some(text) = order.source_text.clone() else {
            return Err(JobError::Permanent(anyhow::anyhow!(
                "order {} has no text to parse",
                self.order_id
            )));
        };
        // The (possibly remote) parse runs outside the transaction.
        let parsed = parse_text(app, &text).await?;
        let inputs: Vec<LineInput> = parsed
            .items
            .iter()
            .filter_map(|i| {
                Some(LineInput {
                    sku: i.sku.clone(),
                    qty: json!(i.qty?),
                    unit: i.unit.clone()?,
                })
            })
            .collect();
        let (rows, line_errors) = match app.intake().check_lines(&inputs).await {
            Ok(lines) => (
                lines.into_iter().map(CheckedLine::into_row).collect(),
                Vec::new(),
            ),
            Err(IntakeError::Invalid(errors)) => (Vec::new(), errors),
            Err(e) => return Err(JobError::Retryable(e.into())),
        };
        let mut tx = app.db().begin().await?;
        let Some(mut order) = repo::find_for_update(&mut tx, self.order_id).await? else {
            return Err(JobError::Permanent(anyhow::anyhow!(
                "order {} vanished",
                self.order_id
            )));
        };
        if order.status() != OrderStatus::Received
            || !repo::lines_tx(&mut tx, &order).await?.is_empty()
        {
            // An earlier run of this step already did the work.
            return Ok(());
        }
        repo::replace_lines(&mut tx, &order, &rows).await?;
        if parsed.needs_review || !line_errors.is_empty() || rows.is_empty() {
            let detail = json!({ "agent": parsed.agent, "items": parsed.items, "flags": parsed.flags, "line_errors": line_errors });
            let r = transition::apply(
                &mut tx,
                &mut order,
                OrderStatus::OnHold,
                &Actor::system(),
                Some("parse_review"),
                Some(detail),
            )
            .await?;
            r.or_retry()?;
        } else {
            continue_after(&mut tx, &order).await?;
        }
        ctx.complete_in(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn on_dead(self, ctx: JobContext, error: String) -> anyhow::Result<()> {
        transition::fail(ctx.app.db(), self.order_id, ctx.job_id, error).await
    }
}

/// Body of `POST /api/v1/orders/parse`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ParseRequest {
    /// The message, e.g. "5 kg chini, 2 carton wai wai" or "तेल ३ लिटर".
    pub text: String,
}

/// Why a preview could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PreviewError {
    /// The text is empty or too long.
    #[error("invalid text")]
    Invalid(FieldError),
    /// The catalogue could not be read.
    #[error(transparent)]
    Storage(#[from] sqlx::Error),
}

/// Validates a parse preview request and parses it.
pub async fn preview(app: &App, req: &ParseRequest) -> Result<ParseResult, PreviewError> {
    check_text(&req.text).map_err(PreviewError::Invalid)?;
    Ok(parse_text(app, &req.text).await?)
}
