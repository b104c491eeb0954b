//! Reports (DOMAIN "Reporting"): the figures behind the admin, vendor and retailer
//! dashboards, and CSV exports of orders and of the credit summary (each account's ledger has
//! its own export: `GET /credit/accounts/{id}/ledger?format=csv`).
//!
//! Every figure is scoped by who asks: staff see everything; a retailer its own orders and its
//! own credit account; a vendor its own parts (offers it received), their values and products,
//! never the orders' totals (the vendor visibility rule). Money is in paisa (integers) with
//! NPR beside it. Windows end at the app's clock (`App::clock`), so tests drive them.
//!
//! Revenue is the value of what was ordered and not refused: orders (parts, for a vendor)
//! created in the hour, less those rejected, cancelled or failed.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::app::App;
use crate::base::db::Db;
use crate::base::principal::{Principal, Role, STAFF};
use crate::base::time::fmt_time;
use crate::base::wire::error::{ApiError, Problem};
use crate::base::wire::extract::Query;
use crate::with_replica;

const MINUTE: i64 = 60_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 86_400_000;

/// Order statuses whose value is not revenue.
const REFUSED: &str = "('rejected', 'cancelled', 'failed')";
/// Part statuses that are not (or no longer) a vendor's business.
const NOT_VENDORS: &str = "('cancelled', 'unassigned')";

/// Routes of the reports.
pub fn router() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(summary))
        .routes(routes!(orders_csv))
        .routes(routes!(credit_csv))
}

/// The window of a report.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct WindowParams {
    /// Hours back from now, 1–720 (default 24).
    pub hours: Option<i64>,
}

impl WindowParams {
    fn hours(&self) -> Result<i64, ApiError> {
        match self.hours {
            None => Ok(24),
            Some(h) if (1..=720).contains(&h) => Ok(h),
            Some(_) => Err(ApiError::param("hours", "hours must be between 1 and 720")),
        }
    }
}

/// Whose figures.
#[derive(Clone, Copy, Debug)]
enum Scope {
    All,
    Retailer(Uuid),
    Vendor(Uuid),
}

fn scope_of(p: &Principal) -> Result<Scope, ApiError> {
    p.require(&[Role::Admin, Role::Operator, Role::Retailer, Role::Vendor])?;
    Ok(match (p.retailer(), p.vendor()) {
        (Some(r), _) => Scope::Retailer(r),
        (_, Some(v)) => Scope::Vendor(v),
        _ => Scope::All,
    })
}

/// One bucket of a time series.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Bucket {
    /// Start of the bucket (Nepal time).
    pub at: String,
    /// Orders (parts, for a vendor) created in it.
    pub count: i64,
    /// Their value not refused, paisa.
    pub revenue_paisa: i64,
}

/// A ranked entry (product, vendor or retailer).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Ranked {
    /// Its id (SKU for a product).
    pub id: String,
    /// Its name.
    pub name: String,
    /// Orders (parts, for a vendor's products) it appears in.
    pub orders: i64,
    /// Value, paisa.
    pub revenue_paisa: i64,
}

/// Credit exposure with ageing of what is past due.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct Exposure {
    /// Accounts.
    pub accounts: i64,
    /// Sum of limits, paisa.
    pub limit_paisa: i64,
    /// Held for orders not delivered yet, paisa.
    pub held_paisa: i64,
    /// Delivered and unpaid, paisa.
    pub outstanding_paisa: i64,
    /// Unpaid and not yet due, paisa.
    pub not_due_paisa: i64,
    /// Unpaid 0–7 days past due, paisa.
    pub overdue_0_7_paisa: i64,
    /// 8–15 days past due.
    pub overdue_8_15_paisa: i64,
    /// 16–30 days past due.
    pub overdue_16_30_paisa: i64,
    /// More than 30 days past due.
    pub overdue_30_plus_paisa: i64,
}

/// The dashboard figures of one window.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Summary {
    /// `all`, `retailer` or `vendor`: whose figures these are.
    pub scope: String,
    /// Window start (Nepal time).
    pub from: String,
    /// Window end (now, Nepal time).
    pub to: String,
    /// The last 60 minutes, one bucket per minute, oldest first.
    pub orders_per_minute: Vec<Bucket>,
    /// The window, one bucket per hour, oldest first.
    pub revenue_per_hour: Vec<Bucket>,
    /// Orders (parts, for a vendor) created in the window, by status.
    pub status_counts: BTreeMap<String, i64>,
    /// Orders on hold now (staff and retailers).
    pub held_orders: i64,
    /// Top 10 products by value in the window.
    pub top_products: Vec<Ranked>,
    /// Top 10 vendors by the value of parts they took (staff only).
    pub top_vendors: Vec<Ranked>,
    /// Top 10 retailers by order value (staff only).
    pub top_retailers: Vec<Ranked>,
    /// Credit exposure: every account for staff, its own for a retailer, none for a vendor.
    pub credit_exposure: Option<Exposure>,
    /// Vendors by their latest grade (staff only).
    pub vendor_grades: BTreeMap<String, i64>,
}

/// Dashboard figures: orders per minute (last hour), revenue per hour, status counts, held
/// orders, top products / vendors / retailers, credit exposure with ageing buckets, vendor
/// grades — scoped to the caller (see the module docs).
#[utoipa::path(get, path = "/reports/summary", tag = "reports", params(WindowParams),
    responses((status = 200, body = Summary),
        (status = 400, body = Problem, content_type = "application/problem+json")))]
async fn summary(
    State(app): State<App>,
    principal: Principal,
    Query(p): Query<WindowParams>,
) -> Result<axum::Json<Summary>, ApiError> {
    let scope = scope_of(&principal)?;
    let hours = p.hours()?;
    let now = app.clock().now_ms();
    let from = now - hours * HOUR;
    let db = app.db();
    let per_minute = series(db, scope, now - 60 * MINUTE, now, MINUTE).await?;
    let per_hour = series(db, scope, from, now, HOUR).await?;
    let staff = matches!(scope, Scope::All);
    Ok(axum::Json(Summary {
        scope: match scope {
            Scope::All => "all",
            Scope::Retailer(_) => "retailer",
            Scope::Vendor(_) => "vendor",
        }
        .into(),
        from: fmt_time(from),
        to: fmt_time(now),
        orders_per_minute: per_minute,
        revenue_per_hour: per_hour,
        status_counts: status_counts(db, scope, from).await?,
        held_orders: held(db, scope).await?,
        top_products: top_products(db, scope, from).await?,
        top_vendors: if staff {
            top_vendors(db, from).await?
        } else {
            vec![]
        },
        top_retailers: if staff {
            top_retailers(db, from).await?
        } else {
            vec![]
        },
        credit_exposure: match scope {
            Scope::All => Some(exposure(db, None, now).await?),
            Scope::Retailer(r) => Some(exposure(db, Some(r), now).await?),
            Scope::Vendor(_) => None,
        },
        vendor_grades: if staff {
            grades(db).await?
        } else {
            BTreeMap::new()
        },
    }))
}

/// The scope's column on `orders o` (or `fulfilments f` for a vendor) and its value.
fn scoped(scope: Scope) -> Option<(&'static str, Uuid)> {
    match scope {
        Scope::All => None,
        Scope::Retailer(r) => Some(("o.retailer_id", r)),
        Scope::Vendor(v) => Some(("f.vendor_id", v)),
    }
}

/// Runs `head` (which ends inside its WHERE), the scope's condition, then `tail`; binds the
/// window start (`{from}` in `head`) and, in `series`, the bucket width (`{step}`).
async fn fetch<T>(
    db: &Db,
    head: &str,
    scope: Scope,
    tail: &str,
    from: i64,
    step: Option<i64>,
) -> Result<Vec<T>, ApiError>
where
    T: Send
        + Unpin
        + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
        + for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>,
{
    let (before_from, after_from) = head.split_once("{from}").unwrap_or((head, ""));
    let rows = with_replica!(db, c => {
        let mut qb = sqlx::QueryBuilder::new("");
        match step {
            Some(step) => {
                let (a, b) = before_from.split_once("{step}").unwrap_or((before_from, ""));
                qb.push(a).push_bind(step).push(b);
            }
            None => {
                qb.push(before_from);
            }
        }
        qb.push_bind(from).push(after_from);
        if let Some((col, id)) = scoped(scope) {
            qb.push(format_args!(" AND {col} = ")).push_bind(id);
        }
        qb.push(tail);
        qb.build_query_as::<T>().fetch_all(c).await
    })?;
    Ok(rows)
}

/// Counts and revenue per `step` from `from` to `to`, every bucket present.
async fn series(
    db: &Db,
    scope: Scope,
    from: i64,
    to: i64,
    step: i64,
) -> Result<Vec<Bucket>, ApiError> {
    let first = from.div_euclid(step);
    let head = match scope {
        Scope::Vendor(_) => format!(
            "SELECT f.created_at_ms / {{step}}, COUNT(*), CAST(COALESCE(SUM(CASE WHEN f.status IN {NOT_VENDORS} THEN 0 \
             ELSE f.total_paisa END), 0) AS BIGINT) FROM fulfilments f WHERE f.created_at_ms >= {{from}}"
        ),
        _ => format!(
            "SELECT o.created_at_ms / {{step}}, COUNT(*), CAST(COALESCE(SUM(CASE WHEN o.status IN {REFUSED} THEN 0 \
             ELSE COALESCE(o.total_paisa, 0) END), 0) AS BIGINT) FROM orders o WHERE o.created_at_ms >= {{from}}"
        ),
    };
    let rows: Vec<(i64, i64, i64)> =
        fetch(db, &head, scope, " GROUP BY 1", first * step, Some(step)).await?;
    let by: BTreeMap<i64, (i64, i64)> = rows.into_iter().map(|(b, n, r)| (b, (n, r))).collect();
    Ok((first..=to.div_euclid(step))
        .map(|b| {
            let (count, revenue_paisa) = by.get(&b).copied().unwrap_or_default();
            Bucket {
                at: fmt_time(b * step),
                count,
                revenue_paisa,
            }
        })
        .collect())
}

async fn status_counts(
    db: &Db,
    scope: Scope,
    from: i64,
) -> Result<BTreeMap<String, i64>, ApiError> {
    let head = match scope {
        Scope::Vendor(_) => {
            "SELECT f.status, COUNT(*) FROM fulfilments f WHERE f.created_at_ms >= {from}"
        }
        _ => "SELECT o.status, COUNT(*) FROM orders o WHERE o.created_at_ms >= {from}",
    };
    let rows: Vec<(String, i64)> = fetch(db, head, scope, " GROUP BY 1", from, None).await?;
    Ok(rows.into_iter().collect())
}

async fn held(db: &Db, scope: Scope) -> Result<i64, ApiError> {
    let n: i64 = match scope {
        Scope::All => with_replica!(db, c => sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(n), 0) AS BIGINT) FROM order_status_counts WHERE status = 'on_hold'").fetch_one(c).await)?,
        Scope::Retailer(r) => with_replica!(db, c => sqlx::query_scalar(
            "SELECT COUNT(*) FROM orders WHERE retailer_id = $1 AND status = 'on_hold'").bind(r).fetch_one(c).await)?,
        Scope::Vendor(_) => 0,
    };
    Ok(n)
}

async fn top_products(db: &Db, scope: Scope, from: i64) -> Result<Vec<Ranked>, ApiError> {
    let (head, tail) = match scope {
        Scope::Vendor(_) => (
            format!(
                "SELECT p.sku, MAX(p.name), COUNT(DISTINCT f.id), \
                 CAST(COALESCE(SUM(l.qty_milli * l.unit_price_paisa / 1000), 0) AS BIGINT) FROM fulfilment_lines l \
                 JOIN fulfilments f ON f.id = l.fulfilment_id JOIN products p ON p.id = l.product_id \
                 WHERE f.status NOT IN {NOT_VENDORS} AND f.created_at_ms >= {{from}}"
            ),
            " GROUP BY p.sku ORDER BY 4 DESC, 1 LIMIT 10",
        ),
        _ => (
            format!(
                "SELECT l.sku, MAX(COALESCE(l.product_name, l.sku)), COUNT(DISTINCT l.order_id), \
                 CAST(COALESCE(SUM(l.total_paisa), 0) AS BIGINT) FROM order_lines l JOIN orders o ON o.id = l.order_id \
                 AND o.created_at_ms = l.order_created_at_ms WHERE o.status NOT IN {REFUSED} \
                 AND l.total_paisa IS NOT NULL AND l.order_created_at_ms >= {{from}}"
            ),
            " GROUP BY l.sku ORDER BY 4 DESC, 1 LIMIT 10",
        ),
    };
    ranked(db, &head, scope, tail, from).await
}

async fn top_vendors(db: &Db, from: i64) -> Result<Vec<Ranked>, ApiError> {
    let head = format!(
        "SELECT f.vendor_id, MAX(v.name), COUNT(*), CAST(COALESCE(SUM(f.total_paisa), 0) AS BIGINT) \
         FROM fulfilments f JOIN vendors v ON v.id = f.vendor_id \
         WHERE f.status NOT IN {NOT_VENDORS} AND f.status <> 'offered' AND f.created_at_ms >= {{from}}"
    );
    let tail = " GROUP BY f.vendor_id ORDER BY 4 DESC, 1 LIMIT 10";
    ranked_parties(db, &head, tail, from).await
}

async fn top_retailers(db: &Db, from: i64) -> Result<Vec<Ranked>, ApiError> {
    let head = format!(
        "SELECT o.retailer_id, MAX(r.name), COUNT(*), CAST(COALESCE(SUM(o.total_paisa), 0) AS BIGINT) \
         FROM orders o JOIN retailers r ON r.id = o.retailer_id \
         WHERE o.status NOT IN {REFUSED} AND o.created_at_ms >= {{from}}"
    );
    let tail = " GROUP BY o.retailer_id ORDER BY 4 DESC, 1 LIMIT 10";
    ranked_parties(db, &head, tail, from).await
}

/// [`ranked`] for vendors or retailers (keyed by id).
async fn ranked_parties(
    db: &Db,
    head: &str,
    tail: &str,
    from: i64,
) -> Result<Vec<Ranked>, ApiError> {
    let rows: Vec<(Uuid, String, i64, i64)> = fetch(db, head, Scope::All, tail, from, None).await?;
    Ok(rows
        .into_iter()
        .map(|(id, name, orders, revenue_paisa)| Ranked {
            id: id.to_string(),
            name,
            orders,
            revenue_paisa,
        })
        .collect())
}

async fn ranked(
    db: &Db,
    head: &str,
    scope: Scope,
    tail: &str,
    from: i64,
) -> Result<Vec<Ranked>, ApiError> {
    let rows: Vec<(String, String, i64, i64)> = fetch(db, head, scope, tail, from, None).await?;
    Ok(rows
        .into_iter()
        .map(|(id, name, orders, revenue_paisa)| Ranked {
            id,
            name,
            orders,
            revenue_paisa,
        })
        .collect())
}

/// Exposure of every account (or of `retailer`'s), with open debits aged by days past due.
async fn exposure(db: &Db, retailer: Option<Uuid>, now: i64) -> Result<Exposure, ApiError> {
    // Days past due: 0–7 means due up to 8 days ago (the day it fell due is day 0).
    let aged_sql = "SELECT \
           CAST(COALESCE(SUM(CASE WHEN due_at_ms IS NULL OR due_at_ms > $1 THEN open_paisa ELSE 0 END), 0) AS BIGINT), \
           CAST(COALESCE(SUM(CASE WHEN due_at_ms <= $1 AND $1 - due_at_ms < 8 * $2 THEN open_paisa ELSE 0 END), 0) AS BIGINT), \
           CAST(COALESCE(SUM(CASE WHEN $1 - due_at_ms >= 8 * $2 AND $1 - due_at_ms < 16 * $2 THEN open_paisa ELSE 0 END), 0) AS BIGINT), \
           CAST(COALESCE(SUM(CASE WHEN $1 - due_at_ms >= 16 * $2 AND $1 - due_at_ms < 31 * $2 THEN open_paisa ELSE 0 END), 0) AS BIGINT), \
           CAST(COALESCE(SUM(CASE WHEN $1 - due_at_ms >= 31 * $2 THEN open_paisa ELSE 0 END), 0) AS BIGINT) \
         FROM ledger_entries WHERE open_paisa > 0 AND ($3 IS NULL OR retailer_id = $3)";
    let totals_sql = "SELECT COUNT(*), CAST(COALESCE(SUM(limit_paisa), 0) AS BIGINT), CAST(COALESCE(SUM(held_paisa), 0) AS BIGINT), \
         CAST(COALESCE(SUM(outstanding_paisa), 0) AS BIGINT) FROM credit_accounts WHERE ($1 IS NULL OR retailer_id = $1)";
    type Totals = (i64, i64, i64, i64);
    type Aged = (i64, i64, i64, i64, i64);
    let (totals, aged): (Totals, Aged) = with_replica!(db, c => (
        sqlx::query_as(totals_sql).bind(retailer).fetch_one(c).await?,
        sqlx::query_as(aged_sql).bind(now).bind(DAY).bind(retailer).fetch_one(c).await?,
    ));
    Ok(Exposure {
        accounts: totals.0,
        limit_paisa: totals.1,
        held_paisa: totals.2,
        outstanding_paisa: totals.3,
        not_due_paisa: aged.0,
        overdue_0_7_paisa: aged.1,
        overdue_8_15_paisa: aged.2,
        overdue_16_30_paisa: aged.3,
        overdue_30_plus_paisa: aged.4,
    })
}

async fn grades(db: &Db) -> Result<BTreeMap<String, i64>, ApiError> {
    let rows: Vec<(String, i64)> = with_replica!(db, c => sqlx::query_as(
        "SELECT s.grade, COUNT(*) FROM vendor_scores s WHERE s.at_ms = \
         (SELECT MAX(t.at_ms) FROM vendor_scores t WHERE t.vendor_id = s.vendor_id) GROUP BY s.grade")
        .fetch_all(c).await)?;
    Ok(rows.into_iter().collect())
}

fn csv_response(w: csv::Writer<Vec<u8>>, name: &str) -> Result<Response, ApiError> {
    let body = w
        .into_inner()
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("{e}")))?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        body,
    )
        .into_response())
}

/// A text cell a spreadsheet will not run as a formula.
fn cell(s: &str) -> String {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    }
}

fn npr(paisa: i64) -> String {
    format!("{}.{:02}", paisa / 100, (paisa % 100).abs())
}

/// Orders created in the window as CSV, oldest first (staff: all; a retailer: its own).
/// Vendors export their parts from `GET /fulfilments` instead: an order's total is not theirs.
#[utoipa::path(get, path = "/reports/orders.csv", tag = "reports", params(WindowParams),
    responses((status = 200, description = "Orders CSV", content_type = "text/csv"),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json")))]
async fn orders_csv(
    State(app): State<App>,
    principal: Principal,
    Query(p): Query<WindowParams>,
) -> Result<Response, ApiError> {
    principal.require(&[Role::Admin, Role::Operator, Role::Retailer])?;
    let hours = p.hours()?;
    let from = app.clock().now_ms() - hours * HOUR;
    type Row = (
        Uuid,
        i64,
        Uuid,
        String,
        String,
        String,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<String>,
    );
    let retailer = principal.retailer();
    let rows: Vec<Row> = with_replica!(app.db(), c => sqlx::query_as(
        "SELECT o.id, o.created_at_ms, o.retailer_id, r.name, o.status, o.channel, o.subtotal_paisa, o.vat_paisa, \
         o.total_paisa, COALESCE(o.reject_reason, o.hold_reason) FROM orders o JOIN retailers r ON r.id = o.retailer_id \
         WHERE o.created_at_ms >= $1 AND ($2 IS NULL OR o.retailer_id = $2) ORDER BY o.created_at_ms, o.id")
        .bind(from).bind(retailer).fetch_all(c).await)?;
    let mut w = csv::Writer::from_writer(Vec::new());
    let internal = |e: csv::Error| ApiError::Internal(e.into());
    w.write_record([
        "id",
        "created_at",
        "retailer_id",
        "retailer",
        "status",
        "channel",
        "subtotal_npr",
        "vat_npr",
        "total_npr",
        "reason",
    ])
    .map_err(internal)?;
    let money = |v: Option<i64>| v.map(npr).unwrap_or_default();
    for (id, at, retailer_id, name, status, channel, sub, vat, total, reason) in rows {
        w.write_record([
            id.to_string(),
            fmt_time(at),
            retailer_id.to_string(),
            cell(&name),
            status,
            channel,
            money(sub),
            money(vat),
            money(total),
            cell(reason.as_deref().unwrap_or_default()),
        ])
        .map_err(internal)?;
    }
    csv_response(w, "orders.csv")
}

/// The credit summary as CSV, one row per account (staff): limit, held, outstanding,
/// available, status, band and score, and the unpaid amounts by days past due.
#[utoipa::path(get, path = "/reports/credit.csv", tag = "reports",
    responses((status = 200, description = "Credit summary CSV", content_type = "text/csv"),
        (status = 403, body = Problem, content_type = "application/problem+json")))]
async fn credit_csv(State(app): State<App>, principal: Principal) -> Result<Response, ApiError> {
    principal.require(STAFF)?;
    let now = app.clock().now_ms();
    type Row = (
        Uuid,
        String,
        i64,
        i64,
        i64,
        i64,
        String,
        Option<String>,
        Option<i32>,
    );
    let accounts: Vec<Row> = with_replica!(app.db(), c => sqlx::query_as(
        "SELECT a.retailer_id, r.name, a.limit_paisa, a.held_paisa, a.outstanding_paisa, a.credit_balance_paisa, \
         a.status, a.band, a.score FROM credit_accounts a JOIN retailers r ON r.id = a.retailer_id ORDER BY r.name, a.retailer_id")
        .fetch_all(c).await)?;
    let open: Vec<(Uuid, Option<i64>, i64)> = with_replica!(app.db(), c => sqlx::query_as(
        "SELECT retailer_id, due_at_ms, open_paisa FROM ledger_entries WHERE open_paisa > 0")
        .fetch_all(c).await)?;
    let mut aged: BTreeMap<Uuid, [i64; 5]> = BTreeMap::new();
    for (retailer, due, open) in open {
        let slot = match due.map(|d| now - d) {
            None => 0,
            Some(late) if late < 0 => 0,
            Some(late) if late < 8 * DAY => 1,
            Some(late) if late < 16 * DAY => 2,
            Some(late) if late < 31 * DAY => 3,
            Some(_) => 4,
        };
        aged.entry(retailer).or_default()[slot] += open;
    }
    let mut w = csv::Writer::from_writer(Vec::new());
    let internal = |e: csv::Error| ApiError::Internal(e.into());
    w.write_record([
        "retailer_id",
        "retailer",
        "limit_npr",
        "held_npr",
        "outstanding_npr",
        "available_npr",
        "status",
        "band",
        "score",
        "not_due_npr",
        "overdue_0_7_npr",
        "overdue_8_15_npr",
        "overdue_16_30_npr",
        "overdue_30_plus_npr",
    ])
    .map_err(internal)?;
    for (id, name, limit, held, outstanding, balance, status, band, score) in accounts {
        let a = aged.get(&id).copied().unwrap_or_default();
        let available = (limit - held - outstanding + balance).max(0);
        w.write_record([
            id.to_string(),
            cell(&name),
            npr(limit),
            npr(held),
            npr(outstanding),
            npr(available),
            status,
            band.unwrap_or_default(),
            score.map(|s| s.to_string()).unwrap_or_default(),
            npr(a[0]),
            npr(a[1]),
            npr(a[2]),
            npr(a[3]),
            npr(a[4]),
        ])
        .map_err(internal)?;
    }
    csv_response(w, "credit.csv")
}

#[cfg(test)]
mod tests {
    use super::{cell, npr};

    #[test]
    fn cells_are_not_formulas_and_money_has_two_decimals() {
        assert_eq!(cell("=1+1"), "'=1+1");
        assert_eq!(cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(cell("Gita Kirana"), "Gita Kirana");
        assert_eq!(npr(56_500), "565.00");
        assert_eq!(npr(5), "0.05");
    }
}
