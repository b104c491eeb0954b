//! HTTP routes of credit: a retailer's account and ledger (the retailer itself and staff),
//! payments (operators), limits and blocks (admins), reconciliation (admins).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::ledger::{self, Drift};
use super::payments::{self, Method, PaymentError};
use super::repo::{self, AccountRow, LedgerRow};
use crate::app::App;
use crate::base::audit;
use crate::base::domain::{npr_to_paisa, paisa_to_npr};
use crate::base::principal::{ADMIN, Principal, Role, STAFF};
use crate::base::time::fmt_time;
use crate::base::wire::error::{ApiError, FieldError, Problem};
use crate::base::wire::extract::{Json, Path, Query};
use crate::base::wire::{Page, page_limit};

/// Routes of this feature.
pub fn router() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(get_account))
        .routes(routes!(get_ledger))
        .routes(routes!(record_payment))
        .routes(routes!(set_limit))
        .routes(routes!(block))
        .routes(routes!(unblock))
        .routes(routes!(reconciliation))
        .routes(routes!(get_score))
        .routes(routes!(list_alerts))
        .routes(routes!(acknowledge_alert))
}

/// A retailer's credit account.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AccountView {
    /// The retailer.
    pub retailer_id: Uuid,
    /// Credit limit, NPR.
    pub limit_npr: f64,
    /// Reserved for open orders, NPR.
    pub held_npr: f64,
    /// Delivered and unpaid, NPR.
    pub outstanding_npr: f64,
    /// Paid in advance (settles the next delivery), NPR.
    pub credit_balance_npr: f64,
    /// What may still be ordered on credit: limit − outstanding − held, NPR.
    pub available_npr: f64,
    /// `active` or `blocked`.
    pub status: String,
    /// Days from delivery to due date.
    pub terms_days: i32,
    /// Credit score 300–900, once scored.
    pub score: Option<i32>,
    /// Band, once scored.
    pub band: Option<String>,
}

impl From<AccountRow> for AccountView {
    fn from(a: AccountRow) -> Self {
        Self {
            retailer_id: a.retailer_id,
            limit_npr: paisa_to_npr(a.limit_paisa),
            held_npr: paisa_to_npr(a.held_paisa),
            outstanding_npr: paisa_to_npr(a.outstanding_paisa),
            credit_balance_npr: paisa_to_npr(a.credit_balance_paisa),
            available_npr: paisa_to_npr(
                (a.limit_paisa - a.outstanding_paisa - a.held_paisa).max(0),
            ),
            status: a.status,
            terms_days: a.terms_days,
            score: a.score,
            band: a.band,
        }
    }
}

/// The retailer `id` if the caller may see its account (a retailer: only its own; another
/// id is "not found").
fn visible(principal: &Principal, id: Uuid) -> Result<(), ApiError> {
    principal.require(&[Role::Admin, Role::Operator, Role::Retailer])?;
    match principal.retailer() {
        Some(own) if own != id => Err(ApiError::NotFound("credit account")),
        _ => Ok(()),
    }
}

/// A retailer's credit account: limit, held, outstanding, available, band and score.
#[utoipa::path(get, path = "/credit/accounts/{id}", tag = "credit",
    params(("id" = Uuid, Path, description = "Retailer id")),
    responses((status = 200, body = AccountView), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn get_account(
    State(app): State<App>,
    principal: Principal,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<AccountView>, ApiError> {
    visible(&principal, id)?;
    let account = repo::account(app.db(), id)
        .await?
        .ok_or(ApiError::NotFound("credit account"))?;
    Ok(axum::Json(account.into()))
}

/// One ledger entry.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EntryView {
    /// Sequence in the account, from 1 (the cursor).
    pub seq: i64,
    /// `order_debit`, `payment_credit`, `refund_credit`, `adjustment_debit`, `adjustment_credit`.
    pub kind: String,
    /// Signed amount, NPR: debits positive, credits negative.
    pub amount_npr: f64,
    /// Running balance after this entry (owed, minus credit), NPR.
    pub balance_npr: f64,
    /// Order concerned.
    pub order_id: Option<Uuid>,
    /// Payment concerned.
    pub payment_id: Option<Uuid>,
    /// Debits: due date (Nepal time).
    pub due_at: Option<String>,
    /// Debits: still unpaid, NPR.
    pub open_npr: Option<f64>,
    /// Debits: when fully paid (Nepal time).
    pub paid_at: Option<String>,
    /// Payment method or reversal reason.
    pub note: Option<String>,
    /// When (Nepal time).
    pub at: String,
}

impl From<LedgerRow> for EntryView {
    fn from(e: LedgerRow) -> Self {
        Self {
            seq: e.seq,
            kind: e.kind,
            amount_npr: paisa_to_npr(e.amount_paisa),
            balance_npr: paisa_to_npr(e.balance_paisa),
            order_id: e.order_id,
            payment_id: e.payment_id,
            due_at: e.due_at_ms.map(fmt_time),
            open_npr: e.open_paisa.map(paisa_to_npr),
            paid_at: e.paid_at_ms.map(fmt_time),
            note: e.note,
            at: fmt_time(e.at_ms),
        }
    }
}

/// Paging and format of the ledger.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LedgerParams {
    /// Page size, 1–200 (default 50).
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page (a sequence number).
    pub cursor: Option<i64>,
    /// `csv` for a CSV export of the whole ledger (oldest first) instead of a JSON page.
    pub format: Option<String>,
}

/// A retailer's ledger, newest first, with cursor pages; `format=csv` exports all of it.
#[utoipa::path(get, path = "/credit/accounts/{id}/ledger", tag = "credit", params(("id" = Uuid, Path, description = "Retailer id"), LedgerParams),
    responses((status = 200, body = Page<EntryView>), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn get_ledger(
    State(app): State<App>,
    principal: Principal,
    Path(id): Path<Uuid>,
    Query(p): Query<LedgerParams>,
) -> Result<Response, ApiError> {
    visible(&principal, id)?;
    match p.format.as_deref() {
        None | Some("json") => {}
        Some("csv") => return ledger_csv(&app, id).await,
        Some(_) => return Err(ApiError::param("format", "format must be json or csv")),
    }
    let limit = page_limit(p.limit)?;
    let rows = repo::ledger(app.db(), id, p.cursor, limit + 1).await?;
    let (rows, next) = crate::base::wire::split_page(rows, limit, |e| e.seq.to_string());
    let page = Page {
        items: rows.into_iter().map(EntryView::from).collect(),
        next_cursor: next,
    };
    Ok(axum::Json(page).into_response())
}

async fn ledger_csv(app: &App, id: Uuid) -> Result<Response, ApiError> {
    let mut all = Vec::new();
    let mut before = None;
    loop {
        let page = repo::ledger(app.db(), id, before, 1000).await?;
        let done = page.len() < 1000;
        before = page.last().map(|e| e.seq);
        all.extend(page);
        if done {
            break;
        }
    }
    all.reverse();
    let mut w = csv::Writer::from_writer(Vec::new());
    let header = [
        "seq",
        "at",
        "kind",
        "amount_npr",
        "balance_npr",
        "order_id",
        "payment_id",
        "due_at",
        "open_npr",
        "paid_at",
        "note",
    ];
    w.write_record(header)
        .map_err(|e| ApiError::Internal(e.into()))?;
    for e in all.into_iter().map(EntryView::from) {
        let opt = |v: Option<String>| v.unwrap_or_default();
        w.write_record([
            e.seq.to_string(),
            e.at,
            e.kind,
            format!("{:.2}", e.amount_npr),
            format!("{:.2}", e.balance_npr),
            opt(e.order_id.map(|v| v.to_string())),
            opt(e.payment_id.map(|v| v.to_string())),
            opt(e.due_at),
            opt(e.open_npr.map(|v| format!("{v:.2}"))),
            opt(e.paid_at),
            opt(e.note),
        ])
        .map_err(|e| ApiError::Internal(e.into()))?;
    }
    let body = w
        .into_inner()
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("{e}")))?;
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], body).into_response())
}

/// Body of a payment.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentBody {
    /// Amount, NPR (up to 2 decimals, greater than zero).
    pub amount_npr: f64,
    /// `cash`, `bank`, `wallet` or `cheque`.
    pub method: Method,
    /// Receipt or provider reference, unique per retailer (1–100 characters). Without it,
    /// the `Idempotency-Key` header is the reference.
    #[serde(default)]
    pub reference: Option<String>,
}

/// A recorded payment.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PaymentView {
    /// The payment.
    pub payment_id: Uuid,
    /// Its ledger entry.
    pub entry: EntryView,
    /// Debits it paid, oldest due first: `[{entry_id, amount_npr}]`.
    #[schema(value_type = Object)]
    pub applied: serde_json::Value,
    /// Paid beyond what was owed (now credit balance), NPR.
    pub unapplied_npr: f64,
    /// The account after it.
    pub account: AccountView,
}

/// Record a payment: allocated to the oldest due debits first; an overpayment becomes credit
/// balance. A repeated reference with the same amount replays the first answer (200); with
/// another amount it is refused (409).
#[utoipa::path(post, path = "/credit/accounts/{id}/payments", tag = "credit", request_body = PaymentBody,
    params(("id" = Uuid, Path, description = "Retailer id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Used as the reference when the body has none")),
    responses((status = 201, body = PaymentView), (status = 200, description = "Replay of a recorded payment", body = PaymentView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn record_payment(
    State(app): State<App>,
    principal: Principal,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    body: Result<Json<PaymentBody>, ApiError>,
) -> Result<Response, ApiError> {
    principal.require(STAFF)?;
    let Json(body) = body?;
    let reference = body
        .reference
        .clone()
        .or_else(|| {
            headers
                .get("idempotency-key")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_default();
    let mut errors = Vec::new();
    let amount = npr_to_paisa(body.amount_npr).filter(|a| *a > 0);
    if amount.is_none() {
        errors.push(FieldError::new(
            "amount_npr",
            "must be greater than zero, with at most 2 decimals",
        ));
    }
    if reference.trim().is_empty() || reference.chars().count() > 100 {
        errors.push(FieldError::new(
            "reference",
            "give a reference of 1 to 100 characters (or an Idempotency-Key)",
        ));
    }
    let Some(amount) = amount.filter(|_| errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };
    let rules = &app.settings().credit;
    let mut tx = app.db().begin().await?;
    let actor = principal.actor();
    let record = async |tx: &mut crate::base::db::Tx| {
        let reference = reference.trim();
        payments::record(tx, id, amount, body.method, reference, &actor, &rules.rules).await
    };
    // Nearly every retailer who pays has an account (opened with its first order): the
    // shop is looked up and an account opened only when the payment finds none.
    let recorded = match record(&mut tx).await {
        Err(PaymentError::NoAccount) => {
            retailer_exists(&app, id).await?;
            repo::ensure_accounts(&mut tx, &[id], rules.default_limit_paisa()).await?;
            record(&mut tx).await
        }
        other => other,
    }
    .map_err(payment_error)?;
    if recorded.new {
        // The score follows payments (DOMAIN: recomputed daily and on payment).
        let opts = crate::queue::EnqueueOptions::default();
        crate::queue::enqueue(
            &mut tx,
            &super::scoring::RescoreRetailer { retailer_id: id },
            opts,
        )
        .await?;
        let entry = principal.audit("credit.payment").on("retailer", id).summary(serde_json::json!({
            "payment_id": recorded.payment_id, "amount_paisa": amount, "method": body.method.as_str(), "reference": reference.trim() }));
        audit::record_tx(&mut tx, &entry).await?;
    }
    let account = match recorded.account.clone() {
        Some(a) => a,
        None => repo::account_tx(&mut tx, id)
            .await?
            .ok_or(ApiError::NotFound("credit account"))?,
    };
    tx.commit().await?;
    let status = if recorded.new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let view = PaymentView {
        payment_id: recorded.payment_id,
        entry: recorded.entry.into(),
        applied: serde_json::json!(
            recorded
                .applied
                .iter()
                .map(|(e, a)| serde_json::json!({ "entry_id": e, "amount_npr": paisa_to_npr(*a) }))
                .collect::<Vec<_>>()
        ),
        unapplied_npr: paisa_to_npr(recorded.unapplied),
        account: account.into(),
    };
    Ok((status, axum::Json(view)).into_response())
}

async fn retailer_exists(app: &App, id: Uuid) -> Result<(), ApiError> {
    crate::parties::repo::find_retailer(app.db(), id)
        .await?
        .map(|_| ())
        .ok_or(ApiError::NotFound("retailer"))
}

fn payment_error(e: PaymentError) -> ApiError {
    match e {
        PaymentError::NoAccount => ApiError::NotFound("credit account"),
        PaymentError::NonPositive => ApiError::field("amount_npr", e.to_string()),
        PaymentError::ReferenceReused => ApiError::Conflict(e.to_string()),
        PaymentError::LimitTooLow(msg) => ApiError::field("limit_npr", msg),
        PaymentError::Storage(e) => e.into(),
        PaymentError::Ledger(e) => ApiError::Internal(e.into()),
    }
}

/// Body of a limit change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitBody {
    /// The new limit, NPR.
    pub limit_npr: f64,
    /// Why (required, recorded and audited).
    pub reason: String,
}

/// Body of a block or unblock.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    /// Why (required, recorded and audited).
    pub reason: String,
}

fn check_reason(reason: &str) -> Result<&str, ApiError> {
    let r = reason.trim();
    if r.is_empty() || r.chars().count() > 500 {
        return Err(ApiError::field(
            "reason",
            "a reason of 1 to 500 characters is required",
        ));
    }
    Ok(r)
}

/// Set a retailer's credit limit (admins). A decrease never goes below 1.2 × outstanding.
#[utoipa::path(put, path = "/credit/accounts/{id}/limit", tag = "credit", request_body = LimitBody,
    params(("id" = Uuid, Path, description = "Retailer id")),
    responses((status = 200, body = AccountView), (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn set_limit(
    State(app): State<App>,
    principal: Principal,
    Path(id): Path<Uuid>,
    body: Result<Json<LimitBody>, ApiError>,
) -> Result<axum::Json<AccountView>, ApiError> {
    principal.require(ADMIN)?;
    let Json(body) = body?;
    let reason = check_reason(&body.reason)?;
    let limit = npr_to_paisa(body.limit_npr)
        .filter(|l| *l >= 0)
        .ok_or_else(|| {
            ApiError::field("limit_npr", "must be zero or more, with at most 2 decimals")
        })?;
    retailer_exists(&app, id).await?;
    let cfg = &app.settings().credit;
    let mut tx = app.db().begin().await?;
    repo::ensure_accounts(&mut tx, &[id], cfg.default_limit_paisa()).await?;
    let before = repo::account_tx(&mut tx, id)
        .await?
        .map_or(0, |a| a.limit_paisa);
    let account = payments::set_limit(&mut tx, id, limit, reason, &principal.actor(), &cfg.rules)
        .await
        .map_err(payment_error)?;
    let entry = principal
        .audit("credit.limit_change")
        .on("retailer", id)
        .summary(serde_json::json!({
        "from_paisa": before, "to_paisa": limit, "reason": reason }));
    audit::record_tx(&mut tx, &entry).await?;
    tx.commit().await?;
    Ok(axum::Json(account.into()))
}

async fn set_blocked(
    app: &App,
    principal: &Principal,
    id: Uuid,
    body: Result<Json<ReasonBody>, ApiError>,
    blocked: bool,
) -> Result<axum::Json<AccountView>, ApiError> {
    principal.require(ADMIN)?;
    let Json(body) = body?;
    let reason = check_reason(&body.reason)?;
    retailer_exists(app, id).await?;
    let mut tx = app.db().begin().await?;
    repo::ensure_accounts(&mut tx, &[id], app.settings().credit.default_limit_paisa()).await?;
    let account = payments::set_blocked(&mut tx, id, blocked, reason, &principal.actor())
        .await
        .map_err(payment_error)?;
    let action = if blocked {
        "credit.block"
    } else {
        "credit.unblock"
    };
    let entry = principal
        .audit(action)
        .on("retailer", id)
        .summary(serde_json::json!({ "reason": reason }));
    audit::record_tx(&mut tx, &entry).await?;
    tx.commit().await?;
    Ok(axum::Json(account.into()))
}

/// Block a retailer's credit (admins): new credit orders are refused; holds already placed stay.
#[utoipa::path(post, path = "/credit/accounts/{id}/block", tag = "credit", request_body = ReasonBody,
    params(("id" = Uuid, Path, description = "Retailer id")),
    responses((status = 200, body = AccountView), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn block(
    State(app): State<App>,
    principal: Principal,
    Path(id): Path<Uuid>,
    body: Result<Json<ReasonBody>, ApiError>,
) -> Result<axum::Json<AccountView>, ApiError> {
    set_blocked(&app, &principal, id, body, true).await
}

/// Unblock a retailer's credit (admins).
#[utoipa::path(post, path = "/credit/accounts/{id}/unblock", tag = "credit", request_body = ReasonBody,
    params(("id" = Uuid, Path, description = "Retailer id")),
    responses((status = 200, body = AccountView), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn unblock(
    State(app): State<App>,
    principal: Principal,
    Path(id): Path<Uuid>,
    body: Result<Json<ReasonBody>, ApiError>,
) -> Result<axum::Json<AccountView>, ApiError> {
    set_blocked(&app, &principal, id, body, false).await
}

/// The reconciliation report.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Reconciliation {
    /// Accounts checked.
    pub accounts: usize,
    /// Accounts whose counters disagree with their holds or ledger (empty when all is well).
    #[schema(value_type = Vec<Object>)]
    pub drift: Vec<serde_json::Value>,
}

/// Prove every account against its holds and ledger (admins): held = pending holds,
/// outstanding = open debits, balance = Σ entries.
#[utoipa::path(get, path = "/credit/reconciliation", tag = "credit",
    responses((status = 200, body = Reconciliation)))]
async fn reconciliation(
    State(app): State<App>,
    principal: Principal,
) -> Result<axum::Json<Reconciliation>, ApiError> {
    principal.require(ADMIN)?;
    let accounts = repo::reconciliation(app.db()).await?.len();
    let drift: Vec<Drift> = ledger::reconcile(app.db()).await?;
    Ok(axum::Json(Reconciliation {
        accounts,
        drift: drift.into_iter().map(|d| serde_json::json!(d)).collect(),
    }))
}

/// One computed score.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ScoreView {
    /// 300–900.
    pub score: i32,
    /// `excellent`, `good`, `fair`, `poor`, `very_poor`.
    pub band: String,
    /// False for a retailer scored on neutral factors (no history yet).
    pub has_history: bool,
    /// `[{name, weight_pct, points_0_100, detail}]`: how the score was reached.
    #[schema(value_type = Object)]
    pub factors: serde_json::Value,
    /// When (Nepal time).
    pub at: String,
}

/// A retailer's credit score with its factor breakdown.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ScoreReport {
    /// The latest score.
    pub current: ScoreView,
    /// Earlier scores, newest first (up to 30).
    pub history: Vec<ScoreView>,
}

/// A retailer's credit score: the latest with its factors, and its history.
#[utoipa::path(get, path = "/credit/accounts/{id}/score", tag = "credit",
    params(("id" = Uuid, Path, description = "Retailer id")),
    responses((status = 200, body = ScoreReport), (status = 404, description = "Not scored yet", body = Problem, content_type = "application/problem+json")))]
async fn get_score(
    State(app): State<App>,
    principal: Principal,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<ScoreReport>, ApiError> {
    visible(&principal, id)?;
    let mut rows = super::scoring::history(app.db(), id, 31)
        .await?
        .into_iter()
        .map(|r| ScoreView {
            score: r.score,
            band: r.band,
            has_history: r.has_history,
            factors: r.factors.0,
            at: fmt_time(r.at_ms),
        });
    let current = rows.next().ok_or(ApiError::NotFound("credit score"))?;
    Ok(axum::Json(ScoreReport {
        current,
        history: rows.collect(),
    }))
}

/// Filters of the alert list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AlertParams {
    /// Only alerts nobody acknowledged yet (default false).
    pub open: Option<bool>,
    /// Only this retailer's.
    pub retailer_id: Option<Uuid>,
    /// Page size, 1–200 (default 50).
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<Uuid>,
}

/// A risk or credit alert.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AlertView {
    /// Id.
    pub id: Uuid,
    /// The retailer.
    pub retailer_id: Uuid,
    /// `overdue_warning`, `overdue_block`, `late_payment_cut`, `high_risk`, `order_spike`.
    pub kind: String,
    /// `info`, `warning`, `critical`.
    pub severity: String,
    /// What triggered it.
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
    /// Raised (Nepal time).
    pub created_at: String,
    /// Who acknowledged it.
    pub acknowledged_by: Option<String>,
    /// When (Nepal time).
    pub acknowledged_at: Option<String>,
}

impl From<super::alerts::AlertRow> for AlertView {
    fn from(a: super::alerts::AlertRow) -> Self {
        Self {
            id: a.id,
            retailer_id: a.retailer_id,
            kind: a.kind,
            severity: a.severity,
            detail: a.detail.0,
            created_at: fmt_time(a.created_at_ms),
            acknowledged_by: a.acknowledged_by,
            acknowledged_at: a.acknowledged_at_ms.map(fmt_time),
        }
    }
}

/// Risk and credit alerts, newest first (staff).
#[utoipa::path(get, path = "/credit/alerts", tag = "credit", params(AlertParams),
    responses((status = 200, body = Page<AlertView>)))]
async fn list_alerts(
    State(app): State<App>,
    principal: Principal,
    Query(p): Query<AlertParams>,
) -> Result<axum::Json<Page<AlertView>>, ApiError> {
    principal.require(STAFF)?;
    let limit = page_limit(p.limit)?;
    let rows = super::alerts::list(
        app.db(),
        p.open.unwrap_or(false),
        p.retailer_id,
        p.cursor,
        limit + 1,
    )
    .await?;
    let (rows, next) = crate::base::wire::split_page(rows, limit, |a| a.id.to_string());
    Ok(axum::Json(Page {
        items: rows.into_iter().map(AlertView::from).collect(),
        next_cursor: next,
    }))
}

/// Acknowledge an alert (staff; audited). Acknowledging twice keeps the first.
#[utoipa::path(post, path = "/credit/alerts/{id}/acknowledge", tag = "credit",
    params(("id" = Uuid, Path, description = "Alert id")),
    responses((status = 204, description = "Acknowledged"), (status = 404, body = Problem, content_type = "application/problem+json")))]
async fn acknowledge_alert(
    State(app): State<App>,
    principal: Principal,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    principal.require(STAFF)?;
    let mut tx = app.db().begin().await?;
    if !super::alerts::acknowledge(&mut tx, id, &principal.actor(), crate::base::time::now_ms())
        .await?
    {
        return Err(ApiError::NotFound("alert"));
    }
    let entry = principal.audit("credit.alert_ack").on("risk_alert", id);
    audit::record_tx(&mut tx, &entry).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
