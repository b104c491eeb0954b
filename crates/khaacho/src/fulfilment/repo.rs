//! SQL of fulfilments (vendor parts), their lines and offers, and routing decisions.

use std::collections::{BTreeMap, HashMap};

use sqlx::types::Json;
use uuid::Uuid;

use crate::base::db::{
    BuildBatch, Db, KeyFilter, Reader, Tx, TxInner, column, push_ids, push_rows_by,
};
use crate::parties::repo::{VENDOR_COLS, Vendor};
use crate::{with_keyed, with_latest, with_reader, with_replica, with_tx};

/// Where a vendor part is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PartStatus {
    /// No vendor is left to offer it to: the order waits on an operator.
    Unassigned,
    /// Offered to a vendor, awaiting its answer until the deadline.
    Offered,
    /// The vendor accepted; its stock is reserved.
    Accepted,
    /// On its way.
    Dispatched,
    /// Handed over.
    Delivered,
    /// Withdrawn with its order.
    Cancelled,
}

impl PartStatus {
    /// Every status.
    pub const ALL: [PartStatus; 6] = [
        PartStatus::Unassigned,
        PartStatus::Offered,
        PartStatus::Accepted,
        PartStatus::Dispatched,
        PartStatus::Delivered,
        PartStatus::Cancelled,
    ];

    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            PartStatus::Unassigned => "unassigned",
            PartStatus::Offered => "offered",
            PartStatus::Accepted => "accepted",
            PartStatus::Dispatched => "dispatched",
            PartStatus::Delivered => "delivered",
            PartStatus::Cancelled => "cancelled",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<PartStatus> {
        PartStatus::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// Whether the part still counts against its vendor's capacity.
    pub fn is_open(self) -> bool {
        matches!(
            self,
            PartStatus::Offered | PartStatus::Accepted | PartStatus::Dispatched
        )
    }

    /// Whether the part counts in its vendor's volumes: given to it, not withdrawn.
    pub fn counts_in_volume(self) -> bool {
        !matches!(self, PartStatus::Unassigned | PartStatus::Cancelled)
    }
}

/// The statuses that count against a vendor's capacity, as SQL.
const OPEN_SQL: &str = "('offered', 'accepted', 'dispatched')";

/// The statuses that count in no vendor's volume ([`PartStatus::counts_in_volume`]), as SQL.
const WITHDRAWN_SQL: &str = "('unassigned', 'cancelled')";

/// A vendor part.
#[derive(Clone, Debug, sqlx::FromRow, serde::Deserialize)]
pub struct PartRow {
    /// Id (UUIDv7).
    pub id: Uuid,
    /// The order.
    pub order_id: Uuid,
    /// The order's creation time (its partition key).
    pub order_created_at_ms: i64,
    /// The buyer.
    pub retailer_id: Uuid,
    /// The vendor it is offered to or accepted by; `None` when unassigned.
    pub vendor_id: Option<Uuid>,
    /// Status name.
    pub status: String,
    /// The open or accepted offer.
    pub offer_id: Option<Uuid>,
    /// The open offer's deadline.
    pub deadline_ms: Option<i64>,
    /// Times it moved to another vendor.
    pub reassignments: i32,
    /// Every vendor it was offered to.
    pub tried: Json<Vec<Uuid>>,
    /// Its lines at the order's prices, VAT included.
    pub total_paisa: i64,
    /// What was handed over, VAT included.
    pub delivered_paisa: Option<i64>,
    /// Accepted at.
    pub accepted_at_ms: Option<i64>,
    /// Dispatched at.
    pub dispatched_at_ms: Option<i64>,
    /// Delivered at.
    pub delivered_at_ms: Option<i64>,
    /// Created at.
    pub created_at_ms: i64,
    /// Last change.
    pub updated_at_ms: i64,
}

impl PartRow {
    /// The parsed status.
    pub fn status(&self) -> PartStatus {
        PartStatus::parse(&self.status).unwrap_or(PartStatus::Cancelled)
    }
}

pub(crate) const PART_COLS: &str = "id, order_id, order_created_at_ms, retailer_id, vendor_id, status, offer_id, deadline_ms, \
     reassignments, tried, total_paisa, delivered_paisa, accepted_at_ms, dispatched_at_ms, delivered_at_ms, \
     created_at_ms, updated_at_ms";

/// A line of a vendor part.
#[derive(Clone, Debug, sqlx::FromRow, serde::Deserialize)]
pub struct PartLineRow {
    /// The part.
    pub fulfilment_id: Uuid,
    /// The order line.
    pub line_no: i32,
    /// Product.
    pub product_id: Uuid,
    /// Quantity in the base unit.
    pub qty_milli: i64,
    /// Base unit.
    pub unit: String,
    /// The retailer's price per base unit.
    pub unit_price_paisa: i64,
    /// Taken from the vendor's stock at accept.
    pub reserved_milli: i64,
    /// Handed over.
    pub delivered_milli: Option<i64>,
}

/// One offer of a part to a vendor.
#[derive(Clone, Debug, sqlx::FromRow, serde::Deserialize)]
pub struct PartOfferRow {
    /// Id.
    pub id: Uuid,
    /// The part.
    pub fulfilment_id: Uuid,
    /// The order.
    pub order_id: Uuid,
    /// The vendor asked.
    pub vendor_id: Uuid,
    /// `offered`, `accepted`, `rejected`, `expired` or `cancelled`.
    pub status: String,
    /// Sent at.
    pub offered_at_ms: i64,
    /// Answer by.
    pub deadline_ms: i64,
    /// Answered (or expired) at.
    pub responded_at_ms: Option<i64>,
    /// The vendor's reason for a rejection.
    pub reason: Option<String>,
}

pub(crate) const OFFER_COLS: &str = "id, fulfilment_id, order_id, vendor_id, status, offered_at_ms, deadline_ms, responded_at_ms, reason";

/// Rows per multi-row statement, well under both backends' bound-parameter limits.
const CHUNK: usize = 400;

/// A vendor's parts that count against its capacity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Load {
    /// Open parts: offered, accepted or dispatched (against `max_active`).
    pub open: i64,
    /// Of those, the offers not yet answered (against `max_awaiting`).
    pub awaiting: i64,
}

impl Load {
    /// What `part` adds to its vendor's load (nothing once it is closed or unassigned).
    fn of(part: &PartRow) -> Option<(Uuid, Load)> {
        let status = part.status();
        let vendor = part.vendor_id.filter(|_| status.is_open())?;
        Some((
            vendor,
            Load {
                open: 1,
                awaiting: i64::from(status == PartStatus::Offered),
            },
        ))
    }
}

/// The vendors `ids` (unknown ones skipped, by id) with each one's [`Load`], as the
/// transactions that moved its parts left it (`vendor_workloads`, kept by [`Workloads`]; a
/// vendor with none has no entry): one statement for what routing reads of its candidates.
pub async fn vendors_with_loads(
    r: &mut Reader<'_>,
    ids: &[Uuid],
) -> Result<(Vec<Vendor>, HashMap<Uuid, Load>), sqlx::Error> {
    if ids.is_empty() {
        return Ok((Vec::new(), HashMap::new()));
    }
    let rows: Vec<VendorWithLoad> = with_reader!(r, c => {
        let mut qb = sqlx::QueryBuilder::new(format!(
            "SELECT {VENDOR_COLS}, w.open_parts, w.awaiting_parts FROM vendors \
             LEFT JOIN vendor_workloads w ON w.vendor_id = vendors.id WHERE"));
        push_ids(&mut qb, "vendors.id", ids);
        qb.push(" ORDER BY vendors.id");
        qb.build_query_as().fetch_all(c).await
    })?;
    let counts: Vec<(Uuid, i64, i64)> = rows
        .iter()
        .filter_map(|r| Some((r.vendor.id, r.open_parts?, r.awaiting_parts?)))
        .collect();
    Ok((rows.into_iter().map(|r| r.vendor).collect(), loads(counts)))
}

/// A vendor with its counts, if it has any.
#[derive(sqlx::FromRow)]
struct VendorWithLoad {
    #[sqlx(flatten)]
    vendor: Vendor,
    open_parts: Option<i64>,
    awaiting_parts: Option<i64>,
}

/// `(vendor, open, awaiting)` rows as each vendor's [`Load`].
fn loads(rows: Vec<(Uuid, i64, i64)>) -> HashMap<Uuid, Load> {
    rows.into_iter()
        .map(|(v, open, awaiting)| (v, Load { open, awaiting }))
        .collect()
}

/// How a transaction changes what is kept per vendor: its load (`vendor_workloads`) and its
/// volume of each product per day (`vendor_volumes`). Each part it moves is
/// [`left`](Self::left) as it was read and [`entered`](Self::entered) as it is written, each
/// with its lines as they were and as they are written, and [`write`](Self::write) adds the
/// difference as the transaction's last statements — in key order (vendor; product, day,
/// vendor), so concurrent transactions lock the kept rows in one order and hold them only
/// until their commit. A count kept this way costs a row per vendor (per vendor and day of a
/// product) to read, where counting the parts grew with every offer a vendor leaves open
/// and every part line of the month.
#[derive(Debug, Default)]
#[must_use = "a transaction that moves parts writes its workload change before it commits"]
pub struct Workloads {
    loads: BTreeMap<Uuid, Load>,
    volumes: BTreeMap<(Uuid, i64, Uuid), i64>,
}

impl Workloads {
    /// `part` as it was before this transaction moved it (nothing for a new part), with its
    /// lines as they were (lines of other parts are passed over).
    pub fn left(&mut self, part: &PartRow, lines: &[PartLineRow]) {
        self.add(part, lines, -1);
    }

    /// `part` as this transaction writes it, with its lines as written.
    pub fn entered(&mut self, part: &PartRow, lines: &[PartLineRow]) {
        self.add(part, lines, 1);
    }

    fn add(&mut self, part: &PartRow, lines: &[PartLineRow], sign: i64) {
        if let Some((vendor, load)) = Load::of(part) {
            let total = self.loads.entry(vendor).or_default();
            total.open += sign * load.open;
            total.awaiting += sign * load.awaiting;
        }
        let Some(vendor) = part.vendor_id.filter(|_| part.status().counts_in_volume()) else {
            return;
        };
        let day = volume_day(part.created_at_ms);
        for l in lines.iter().filter(|l| l.fulfilment_id == part.id) {
            let given = l.delivered_milli.unwrap_or(l.qty_milli);
            *self.volumes.entry((l.product_id, day, vendor)).or_default() += sign * given;
        }
    }

    /// Adds the change to the counts (nothing when the moves cancel out) and returns the
    /// vendors it gave more parts that are now over a limit (`max_active`, `max_awaiting`).
    ///
    /// Routing judges capacity on the counts as committed when it read them, without a lock
    /// (the rows are hot): two transactions that read a vendor one part short of its limit
    /// could each give it a part. This statement waits for the other's commit and adds to
    /// its count, so the check after it sees every part: a caller handed any vendor back
    /// rolls back and decides again on the new counts (the statement returns the counts it
    /// leaves, with the limits). Only a vendor given parts is checked
    /// (a limit lowered below a vendor's open parts holds nothing else up), by routing's own
    /// rule: a limit of 0 is none (`khaacho_vendors::Vendor::capacity`).
    pub async fn write(mut self, tx: &mut Tx) -> Result<Vec<Uuid>, sqlx::Error> {
        self.loads.retain(|_, l| *l != Load::default());
        self.volumes.retain(|_, q| *q != 0);
        let over = self.write_loads(tx).await?;
        // A transaction sent back rolls back: its volumes need no statement.
        if over.is_empty() && !self.volumes.is_empty() {
            write_volumes(tx, &self.volumes).await?;
        }
        Ok(over)
    }

    async fn write_loads(&self, tx: &mut Tx) -> Result<Vec<Uuid>, sqlx::Error> {
        if self.loads.is_empty() {
            return Ok(Vec::new());
        }
        let grown: Vec<Uuid> = self
            .loads
            .iter()
            .filter(|(_, l)| l.open > 0 || l.awaiting > 0)
            .map(|(v, _)| *v)
            .collect();
        // The counts as this statement leaves them, with the vendor's limits: one round trip
        // for the change and the check.
        // On PostgreSQL the rows are an array per column (one text whatever their number),
        // inserted in the order given: the vendors' order.
        let counts: Vec<CountsAfter> = match tx.inner_mut() {
            TxInner::Pg(c) => {
                let rows: Vec<(&Uuid, &Load)> = self.loads.iter().collect();
                sqlx::query_as(sqlx::AssertSqlSafe(LOADS_PG.as_str()))
                    .bind(column(&rows, |r| *r.0))
                    .bind(column(&rows, |r| r.1.open))
                    .bind(column(&rows, |r| r.1.awaiting))
                    .fetch_all(&mut **c)
                    .await?
            }
            TxInner::Sqlite(c) => {
                let mut qb = sqlx::QueryBuilder::new(
                    "INSERT INTO vendor_workloads (vendor_id, open_parts, awaiting_parts) ",
                );
                qb.push_values(&self.loads, |mut b, (vendor, l)| {
                    b.push_bind(*vendor).push_bind(l.open).push_bind(l.awaiting);
                });
                qb.push(LOADS_CHANGE);
                qb.build_batch_as().fetch_all(&mut **c).await?
            }
        };
        let over = counts
            .into_iter()
            .filter(|(vendor, open, awaiting, max_active, max_awaiting)| {
                let over = |count: i64, limit: Option<i32>| {
                    limit.is_some_and(|l| l > 0 && count > i64::from(l))
                };
                grown.contains(vendor)
                    && (over(*open, *max_active) || over(*awaiting, *max_awaiting))
            })
            .map(|(vendor, ..)| vendor)
            .collect();
        Ok(over)
    }
}

/// A vendor's counts as a [`Workloads::write`] left them, with its limits: vendor, open
/// parts, awaiting parts, `max_active`, `max_awaiting`.
type CountsAfter = (Uuid, i64, i64, Option<i32>, Option<i32>);

/// The day a part's volume counts on: whole UTC days since the epoch of its creation.
pub fn volume_day(created_at_ms: i64) -> i64 {
    created_at_ms.div_euclid(khaacho_credit::DAY_MS)
}

/// What [`Workloads::write`] does with a vendor's row that exists, and what it returns.
const LOADS_CHANGE: &str = " ON CONFLICT (vendor_id) DO UPDATE SET open_parts = vendor_workloads.open_parts + excluded.open_parts, \
     awaiting_parts = vendor_workloads.awaiting_parts + excluded.awaiting_parts \
     RETURNING vendor_id, open_parts, awaiting_parts, \
     (SELECT v.max_active FROM vendors v WHERE v.id = vendor_workloads.vendor_id), \
     (SELECT v.max_awaiting FROM vendors v WHERE v.id = vendor_workloads.vendor_id)";

/// [`Workloads::write`]'s statement on PostgreSQL.
static LOADS_PG: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "INSERT INTO vendor_workloads (vendor_id, open_parts, awaiting_parts) \
         SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::bigint[]){LOADS_CHANGE}"
    )
});

/// Adds `(product, day, vendor) → quantity` changes to `vendor_volumes`, in key order (on
/// PostgreSQL one statement over an array per column, its rows inserted in the order given).
async fn write_volumes(
    tx: &mut Tx,
    changes: &BTreeMap<(Uuid, i64, Uuid), i64>,
) -> Result<(), sqlx::Error> {
    let rows: Vec<_> = changes.iter().collect();
    if let TxInner::Pg(c) = tx.inner_mut() {
        sqlx::query(
            "INSERT INTO vendor_volumes (product_id, day, vendor_id, qty_milli) \
             SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::uuid[], $4::bigint[]) \
             ON CONFLICT (product_id, day, vendor_id) DO UPDATE SET qty_milli = vendor_volumes.qty_milli + excluded.qty_milli",
        )
        .bind(column(&rows, |r| r.0.0))
        .bind(column(&rows, |r| r.0.1))
        .bind(column(&rows, |r| r.0.2))
        .bind(column(&rows, |r| *r.1))
        .execute(&mut **c)
        .await?;
        return Ok(());
    }
    for chunk in rows.chunks(CHUNK) {
        with_tx!(tx, c => {
            let mut qb = sqlx::QueryBuilder::new(
                "INSERT INTO vendor_volumes (product_id, day, vendor_id, qty_milli) ");
            qb.push_values(chunk, |mut b, ((product, day, vendor), qty)| {
                b.push_bind(*product).push_bind(*day).push_bind(*vendor).push_bind(**qty);
            });
            qb.push(" ON CONFLICT (product_id, day, vendor_id) DO UPDATE SET qty_milli = vendor_volumes.qty_milli + excluded.qty_milli");
            qb.build_batch().execute(&mut *c).await?;
        });
    }
    Ok(())
}

/// The keys whose kept value differs from the counted one, in key order: `(key, kept,
/// counted)`, a key missing on one side counting as the default there.
fn differences<K, V>(kept: &HashMap<K, V>, counted: &HashMap<K, V>) -> Vec<(K, V, V)>
where
    K: Copy + Ord + std::hash::Hash,
    V: Copy + Default + PartialEq,
{
    let keys: std::collections::BTreeSet<K> = kept.keys().chain(counted.keys()).copied().collect();
    keys.into_iter()
        .map(|k| {
            (
                k,
                kept.get(&k).copied().unwrap_or_default(),
                counted.get(&k).copied().unwrap_or_default(),
            )
        })
        .filter(|(_, k, n)| k != n)
        .collect()
}

/// One kept volume that differed from the parts: `(product, day, vendor)`, kept, counted.
pub type VolumeFix = ((Uuid, i64, Uuid), i64, i64);

/// Recounts the vendors' volumes of the days from `from_day` on (the share rule's window)
/// from the parts, corrects the kept ones that differ and deletes those of earlier days;
/// returns the corrections. Writers wait for it as for [`recount_workloads`]. The count
/// reads every part line of the window: the maintenance job runs it once a day.
pub async fn recount_volumes(db: &Db, from_day: i64) -> Result<Vec<VolumeFix>, sqlx::Error> {
    let from_ms = from_day.saturating_mul(khaacho_credit::DAY_MS);
    let mut tx = db.begin().await?;
    let lock = tx.is_postgres();
    let fixes = with_tx!(tx, c => {
        if lock {
            sqlx::query("LOCK TABLE vendor_volumes IN SHARE ROW EXCLUSIVE MODE").execute(&mut *c).await?;
        }
        sqlx::query("DELETE FROM vendor_volumes WHERE day < $1").bind(from_day).execute(&mut *c).await?;
        let kept: Vec<(Uuid, i64, Uuid, i64)> = sqlx::query_as(
            "SELECT product_id, day, vendor_id, qty_milli FROM vendor_volumes")
            .fetch_all(&mut *c).await?;
        let counted: Vec<(Uuid, i64, Uuid, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT l.product_id, f.created_at_ms / 86400000, f.vendor_id, \
                    CAST(SUM(COALESCE(l.delivered_milli, l.qty_milli)) AS BIGINT) \
             FROM fulfilments f JOIN fulfilment_lines l ON l.fulfilment_id = f.id \
             WHERE f.created_at_ms >= $1 AND f.vendor_id IS NOT NULL AND f.status NOT IN {WITHDRAWN_SQL} \
             GROUP BY l.product_id, f.created_at_ms / 86400000, f.vendor_id")))
            .bind(from_ms)
            .fetch_all(&mut *c).await?;
        let by_key = |rows: Vec<(Uuid, i64, Uuid, i64)>| -> HashMap<(Uuid, i64, Uuid), i64> {
            rows.into_iter().map(|(p, d, v, q)| ((p, d, v), q)).collect()
        };
        let fixes = differences(&by_key(kept), &by_key(counted));
        for ((product, day, vendor), _, n) in &fixes {
            sqlx::query(
                "INSERT INTO vendor_volumes (product_id, day, vendor_id, qty_milli) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (product_id, day, vendor_id) DO UPDATE SET qty_milli = excluded.qty_milli")
                .bind(product).bind(day).bind(vendor).bind(n).execute(&mut *c).await?;
        }
        fixes
    });
    tx.commit().await?;
    Ok(fixes)
}

/// Recounts every vendor's load and corrects the kept counts that differ; returns the
/// corrections, `(vendor, kept, counted)`. Writers of the counts wait for it (PostgreSQL:
/// the table is locked against writes first; SQLite: one writer at a time), so a
/// transaction that moves parts meanwhile either committed before the count, and is in it,
/// or adds its change after the correction.
pub async fn recount_workloads(db: &Db) -> Result<Vec<(Uuid, Load, Load)>, sqlx::Error> {
    let mut tx = db.begin().await?;
    let lock = tx.is_postgres();
    let fixes = with_tx!(tx, c => {
        if lock {
            sqlx::query("LOCK TABLE vendor_workloads IN SHARE ROW EXCLUSIVE MODE").execute(&mut *c).await?;
        }
        let kept: Vec<(Uuid, i64, i64)> = sqlx::query_as(
            "SELECT vendor_id, open_parts, awaiting_parts FROM vendor_workloads")
            .fetch_all(&mut *c).await?;
        let counted: Vec<(Uuid, i64, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT vendor_id, COUNT(*), CAST(SUM(CASE WHEN status = 'offered' THEN 1 ELSE 0 END) AS BIGINT) \
             FROM fulfilments WHERE status IN {OPEN_SQL} AND vendor_id IS NOT NULL GROUP BY vendor_id")))
            .fetch_all(&mut *c).await?;
        let fixes = differences(&loads(kept), &loads(counted));
        for (vendor, _, n) in &fixes {
            sqlx::query(
                "INSERT INTO vendor_workloads (vendor_id, open_parts, awaiting_parts) VALUES ($1, $2, $3) \
                 ON CONFLICT (vendor_id) DO UPDATE SET open_parts = excluded.open_parts, awaiting_parts = excluded.awaiting_parts")
                .bind(vendor).bind(n.open).bind(n.awaiting).execute(&mut *c).await?;
        }
        fixes
    });
    tx.commit().await?;
    Ok(fixes)
}

/// What each vendor was given of each of `products` from `from_day` on (parts not
/// withdrawn; delivered quantities once delivered), base milli-units: `(vendor, product,
/// quantity)` — from the kept daily volumes, a row per vendor and day of a product.
pub async fn volumes(
    r: &mut Reader<'_>,
    products: &[Uuid],
    from_day: i64,
) -> Result<Vec<(Uuid, Uuid, i64)>, sqlx::Error> {
    if products.is_empty() {
        return Ok(Vec::new());
    }
    with_reader!(r, c => {
        let mut qb = sqlx::QueryBuilder::new("");
        push_volumes(&mut qb, products, from_day);
        qb.build_query_as().fetch_all(c).await
    })
}

/// The query of [`volumes`]: `vendor_id, product_id, qty_milli`.
pub fn push_volumes<DB: KeyFilter>(
    qb: &mut sqlx::QueryBuilder<DB>,
    products: &[Uuid],
    from_day: i64,
) where
    i64: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    qb.push("SELECT vendor_id, product_id, CAST(SUM(qty_milli) AS BIGINT) AS qty_milli FROM vendor_volumes WHERE day >= ");
    qb.push_bind(from_day);
    qb.push(" AND");
    push_ids(qb, "product_id", products);
    qb.push(" GROUP BY vendor_id, product_id");
}

/// A new part with its lines and its first offer.
pub struct NewPart {
    /// The part.
    pub part: PartRow,
    /// Its lines.
    pub lines: Vec<PartLineRow>,
    /// Its first offer.
    pub offer: PartOfferRow,
}

/// Pushes `INSERT INTO fulfilments … VALUES …` for `$parts` (the same SQL for either
/// backend's builder).
macro_rules! push_parts {
    ($qb:expr, $parts:expr) => {
        $qb.push(format_args!("INSERT INTO fulfilments ({PART_COLS}) "));
        $qb.push_values($parts, |mut b, n: &NewPart| {
            let p = &n.part;
            b.push_bind(p.id)
                .push_bind(p.order_id)
                .push_bind(p.order_created_at_ms)
                .push_bind(p.retailer_id)
                .push_bind(p.vendor_id)
                .push_bind(&p.status)
                .push_bind(p.offer_id)
                .push_bind(p.deadline_ms)
                .push_bind(p.reassignments)
                .push_bind(p.tried.clone())
                .push_bind(p.total_paisa)
                .push_bind(p.delivered_paisa)
                .push_bind(p.accepted_at_ms)
                .push_bind(p.dispatched_at_ms)
                .push_bind(p.delivered_at_ms)
                .push_bind(p.created_at_ms)
                .push_bind(p.updated_at_ms);
        });
    };
}

/// Pushes `INSERT INTO fulfilment_lines … VALUES …` for `$lines`.
macro_rules! push_part_lines {
    ($qb:expr, $lines:expr) => {
        $qb.push(
            "INSERT INTO fulfilment_lines (fulfilment_id, line_no, product_id, qty_milli, unit, unit_price_paisa, \
             reserved_milli, delivered_milli) ",
        );
        $qb.push_values($lines, |mut b, l: &PartLineRow| {
            b.push_bind(l.fulfilment_id).push_bind(l.line_no).push_bind(l.product_id).push_bind(l.qty_milli)
                .push_bind(&l.unit).push_bind(l.unit_price_paisa).push_bind(l.reserved_milli).push_bind(l.delivered_milli);
        });
    };
}

/// Pushes `INSERT INTO fulfilment_offers … VALUES …` for `$offers`.
macro_rules! push_offers {
    ($qb:expr, $offers:expr) => {
        $qb.push(format_args!(
            "INSERT INTO fulfilment_offers ({OFFER_COLS}) "
        ));
        $qb.push_values($offers, |mut b, o: &PartOfferRow| {
            b.push_bind(o.id)
                .push_bind(o.fulfilment_id)
                .push_bind(o.order_id)
                .push_bind(o.vendor_id)
                .push_bind(&o.status)
                .push_bind(o.offered_at_ms)
                .push_bind(o.deadline_ms)
                .push_bind(o.responded_at_ms)
                .push_bind(&o.reason);
        });
    };
}

/// Pushes `INSERT INTO routing_decisions … VALUES …` for `$decisions`.
macro_rules! push_decisions {
    ($qb:expr, $decisions:expr) => {
        $qb.push("INSERT INTO routing_decisions (id, order_id, fulfilment_id, outcome, reason, decision, at_ms) ");
        $qb.push_values($decisions, |mut b, d: &NewDecision| {
            b.push_bind(Uuid::now_v7()).push_bind(d.order_id).push_bind(d.fulfilment_id).push_bind(d.outcome)
                .push_bind(&d.reason).push_bind(Json(&d.decision)).push_bind(d.at_ms);
        });
    };
}

/// Writes new parts, their lines and offers (three multi-row statements per chunk).
pub async fn insert_parts(tx: &mut Tx, parts: &[NewPart]) -> Result<(), sqlx::Error> {
    for chunk in parts.chunks(CHUNK / 4) {
        with_tx!(tx, c => {
            let mut qb = sqlx::QueryBuilder::new("");
            push_parts!(qb, chunk);
            qb.build_batch().execute(&mut *c).await?;
            let lines: Vec<&PartLineRow> = chunk.iter().flat_map(|n| &n.lines).collect();
            for lines in lines.chunks(CHUNK) {
                let mut qb = sqlx::QueryBuilder::new("");
                push_part_lines!(qb, lines.iter().copied());
                qb.build_batch().execute(&mut *c).await?;
            }
            let mut qb = sqlx::QueryBuilder::new("");
            push_offers!(qb, chunk.iter().map(|n| &n.offer));
            qb.build_batch().execute(&mut *c).await?;
        });
    }
    Ok(())
}

/// Everything routing writes for a batch, with lines `addressed` to their vendors: on
/// PostgreSQL one statement (each table's rows in a data-modifying CTE over `unnest` of one
/// array per column: the same SQL text whatever the batch, so one prepared statement; no row
/// written twice, no CTE reading another's rows), where it was five round trips inside the
/// run's transaction; on SQLite one statement per table, as [`insert_parts`],
/// [`orders::address_lines_many`](crate::orders::repo::address_lines_many) and
/// [`insert_decisions`].
pub async fn write_routed(
    tx: &mut Tx,
    parts: &[NewPart],
    addressed: &[crate::orders::repo::Addressed],
    decisions: &[NewDecision],
) -> Result<(), sqlx::Error> {
    if parts.is_empty() && addressed.is_empty() && decisions.is_empty() {
        return Ok(());
    }
    let TxInner::Pg(t) = tx.inner_mut() else {
        insert_parts(tx, parts).await?;
        crate::orders::repo::address_lines_many(tx, addressed).await?;
        return insert_decisions(tx, decisions).await;
    };
    let rows = crate::orders::repo::Addressed::rows(addressed);
    let ps: Vec<&PartRow> = parts.iter().map(|n| &n.part).collect();
    let os: Vec<&PartOfferRow> = parts.iter().map(|n| &n.offer).collect();
    let ls: Vec<&PartLineRow> = parts.iter().flat_map(|n| &n.lines).collect();
    use crate::base::db::column as col;
    // Without lines to address (the validation run writes its lines itself) the statement
    // has no UPDATE of the lines to plan.
    let sql: &str = if rows.is_empty() {
        &ROUTED_SQL.1
    } else {
        &ROUTED_SQL.0
    };
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    if !rows.is_empty() {
        // The orders' creation times keep the UPDATE to the partitions holding them.
        q = q
            .bind(col(&rows, |r| r.0))
            .bind(col(&rows, |r| r.1))
            .bind(col(&rows, |r| r.2))
            .bind(col(&rows, |r| r.3))
            .bind(crate::base::db::distinct_created(rows.iter().map(|r| r.1)));
    }
    q
        // fulfilments
        .bind(col(&ps, |p| p.id))
        .bind(col(&ps, |p| p.order_id))
        .bind(col(&ps, |p| p.order_created_at_ms))
        .bind(col(&ps, |p| p.retailer_id))
        .bind(col(&ps, |p| p.vendor_id))
        .bind(col(&ps, |p| p.status.as_str()))
        .bind(col(&ps, |p| p.offer_id))
        .bind(col(&ps, |p| p.deadline_ms))
        .bind(col(&ps, |p| p.reassignments))
        .bind(col(&ps, |p| Json(&p.tried.0)))
        .bind(col(&ps, |p| p.total_paisa))
        .bind(col(&ps, |p| p.delivered_paisa))
        .bind(col(&ps, |p| p.accepted_at_ms))
        .bind(col(&ps, |p| p.dispatched_at_ms))
        .bind(col(&ps, |p| p.delivered_at_ms))
        .bind(col(&ps, |p| p.created_at_ms))
        .bind(col(&ps, |p| p.updated_at_ms))
        // fulfilment_offers
        .bind(col(&os, |o| o.id))
        .bind(col(&os, |o| o.fulfilment_id))
        .bind(col(&os, |o| o.order_id))
        .bind(col(&os, |o| o.vendor_id))
        .bind(col(&os, |o| o.status.as_str()))
        .bind(col(&os, |o| o.offered_at_ms))
        .bind(col(&os, |o| o.deadline_ms))
        .bind(col(&os, |o| o.responded_at_ms))
        .bind(col(&os, |o| o.reason.as_deref()))
        // fulfilment_lines
        .bind(col(&ls, |l| l.fulfilment_id))
        .bind(col(&ls, |l| l.line_no))
        .bind(col(&ls, |l| l.product_id))
        .bind(col(&ls, |l| l.qty_milli))
        .bind(col(&ls, |l| l.unit.as_str()))
        .bind(col(&ls, |l| l.unit_price_paisa))
        .bind(col(&ls, |l| l.reserved_milli))
        .bind(col(&ls, |l| l.delivered_milli))
        // routing_decisions
        .bind(col(decisions, |_| Uuid::now_v7()))
        .bind(col(decisions, |d| d.order_id))
        .bind(col(decisions, |d| d.fulfilment_id))
        .bind(col(decisions, |d| d.outcome))
        .bind(col(decisions, |d| d.reason.as_str()))
        .bind(col(decisions, |d| d.decision.get()))
        .bind(col(decisions, |d| d.at_ms))
        .execute(&mut **t)
        .await?;
    Ok(())
}

/// [`write_routed`]'s statement on PostgreSQL: with the lines' UPDATE, and without it.
static ROUTED_SQL: std::sync::LazyLock<(String, String)> =
    std::sync::LazyLock::new(|| (routed_sql(true), routed_sql(false)));

/// [`write_routed`]'s statement; `lines`: with the UPDATE of the addressed lines (its five
/// parameters first).
fn routed_sql(lines: bool) -> String {
    let mut n = 0;
    let mut params = |types: &[&str]| {
        let list: Vec<String> = types
            .iter()
            .map(|t| {
                n += 1;
                format!("${n}::{t}[]")
            })
            .collect();
        list.join(", ")
    };
    let mut sql = String::from("WITH ");
    if lines {
        let v = params(&["uuid", "bigint", "integer", "uuid"]);
        let created = params(&["bigint"]);
        sql.push_str(&format!(
            "v(order_id, created_at_ms, line_no, vendor_id) AS (SELECT * FROM unnest({v})), \
             a AS (UPDATE order_lines SET vendor_id = v.vendor_id FROM v WHERE order_lines.order_id = v.order_id \
             AND order_lines.order_created_at_ms = v.created_at_ms AND order_lines.line_no = v.line_no \
             AND order_lines.order_created_at_ms = ANY({created})), "
        ));
    }
    let f = params(&[
        "uuid", "uuid", "bigint", "uuid", "uuid", "text", "uuid", "bigint", "integer", "jsonb",
        "bigint", "bigint", "bigint", "bigint", "bigint", "bigint", "bigint",
    ]);
    let o = params(&[
        "uuid", "uuid", "uuid", "uuid", "text", "bigint", "bigint", "bigint", "text",
    ]);
    let l = params(&[
        "uuid", "integer", "uuid", "bigint", "text", "bigint", "bigint", "bigint",
    ]);
    // The decisions' JSON comes as text (`text[]::json[]`).
    let d = params(&[
        "uuid",
        "uuid",
        "uuid",
        "text",
        "text",
        "text[]::json",
        "bigint",
    ]);
    sql.push_str(&format!(
        "f AS (INSERT INTO fulfilments ({PART_COLS}) SELECT * FROM unnest({f})), \
         o AS (INSERT INTO fulfilment_offers ({OFFER_COLS}) SELECT * FROM unnest({o})), \
         l AS (INSERT INTO fulfilment_lines (fulfilment_id, line_no, product_id, qty_milli, unit, unit_price_paisa, \
         reserved_milli, delivered_milli) SELECT * FROM unnest({l})), \
         d AS (INSERT INTO routing_decisions (id, order_id, fulfilment_id, outcome, reason, decision, at_ms) \
         SELECT * FROM unnest({d})) \
         SELECT 1"
    ));
    sql
}

/// One new offer of an existing part.
pub async fn insert_offer(tx: &mut Tx, o: &PartOfferRow) -> Result<(), sqlx::Error> {
    with_tx!(tx, c => {
        let mut qb = sqlx::QueryBuilder::new(format!("INSERT INTO fulfilment_offers ({OFFER_COLS}) "));
        qb.push_values([o], |mut b, o| {
                b.push_bind(o.id).push_bind(o.fulfilment_id).push_bind(o.order_id).push_bind(o.vendor_id)
                    .push_bind(&o.status).push_bind(o.offered_at_ms).push_bind(o.deadline_ms)
                    .push_bind(o.responded_at_ms).push_bind(&o.reason);
            });
        qb.build_batch().execute(&mut *c).await.map(|r| r.rows_affected())
    })?;
    Ok(())
}

/// Closes an open offer with `status` (`accepted`, `rejected`, `expired`, `cancelled`).
/// Conditional on it still being open: returns whether it was.
pub async fn close_offer(
    tx: &mut Tx,
    offer: Uuid,
    status: &str,
    at_ms: i64,
    reason: Option<&str>,
) -> Result<bool, sqlx::Error> {
    let n = with_tx!(tx, c => sqlx::query(
        "UPDATE fulfilment_offers SET status = $1, responded_at_ms = $2, reason = $3 WHERE id = $4 AND status = 'offered'")
        .bind(status).bind(at_ms).bind(reason).bind(offer)
        .execute(c).await.map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

/// Marks the accepted offer `offer` as given back by its vendor (`cancelled_by_vendor`, with
/// the vendor's words; the time it was accepted stays). Conditional on its still being
/// accepted: false when it is not.
pub async fn cancel_accepted_offer(
    tx: &mut Tx,
    offer: Uuid,
    reason: Option<&str>,
) -> Result<bool, sqlx::Error> {
    let n = with_tx!(tx, c => sqlx::query(
        "UPDATE fulfilment_offers SET status = 'cancelled_by_vendor', reason = $1 WHERE id = $2 AND status = 'accepted'")
        .bind(reason).bind(offer)
        .execute(c).await.map(|r| r.rows_affected()))?;
    Ok(n == 1)
}

/// Closes the open offers `offers` (id, the vendor's words) as `accepted`: one statement on
/// PostgreSQL whatever their number. Conditional on each still being open: returns how many
/// were.
pub async fn accept_offers(
    tx: &mut Tx,
    offers: &[(Uuid, Option<&str>)],
    at_ms: i64,
) -> Result<usize, sqlx::Error> {
    if offers.len() > 1
        && let TxInner::Pg(c) = tx.inner_mut()
    {
        let ids: Vec<Uuid> = offers.iter().map(|o| o.0).collect();
        let reasons: Vec<Option<&str>> = offers.iter().map(|o| o.1).collect();
        let n = sqlx::query(
            "UPDATE fulfilment_offers f SET status = 'accepted', responded_at_ms = $1, reason = v.reason \
             FROM unnest($2::uuid[], $3::text[]) AS v(id, reason) WHERE f.id = v.id AND f.status = 'offered'",
        )
        .bind(at_ms)
        .bind(ids)
        .bind(reasons)
        .execute(&mut **c)
        .await?
        .rows_affected();
        return Ok(n as usize);
    }
    let mut n = 0;
    for (offer, reason) in offers {
        n += usize::from(close_offer(tx, *offer, "accepted", at_ms, *reason).await?);
    }
    Ok(n)
}

/// The parts of `orders`, locked for update on PostgreSQL, by order and creation.
pub async fn parts_for_update(tx: &mut Tx, orders: &[Uuid]) -> Result<Vec<PartRow>, sqlx::Error> {
    if orders.is_empty() {
        return Ok(Vec::new());
    }
    with_tx!(tx, c => {
        let mut qb = sqlx::QueryBuilder::new(format!("SELECT {PART_COLS} FROM"));
        push_rows_by(&mut qb, "fulfilments", "f", "order_id", orders, Some("id"));
        qb.push(" ORDER BY order_id, id");
        qb.build_query_as::<PartRow>().fetch_all(c).await
    })
}

/// Writes a part's changeable fields back.
pub async fn save_part(tx: &mut Tx, p: &PartRow) -> Result<(), sqlx::Error> {
    with_tx!(tx, c => sqlx::query(
        "UPDATE fulfilments SET vendor_id = $1, status = $2, offer_id = $3, deadline_ms = $4, reassignments = $5, \
         tried = $6, delivered_paisa = $7, accepted_at_ms = $8, dispatched_at_ms = $9, delivered_at_ms = $10, \
         updated_at_ms = $11 WHERE id = $12")
        .bind(p.vendor_id).bind(&p.status).bind(p.offer_id).bind(p.deadline_ms).bind(p.reassignments)
        .bind(p.tried.clone()).bind(p.delivered_paisa).bind(p.accepted_at_ms).bind(p.dispatched_at_ms)
        .bind(p.delivered_at_ms).bind(p.updated_at_ms).bind(p.id)
        .execute(c).await.map(|r| r.rows_affected()))?;
    Ok(())
}

/// Writes how `parts` moved along their vendor's work (status, deadline, delivered amount,
/// the times): one statement on PostgreSQL whatever their number. Their vendor, offer and
/// history are left as they are (an accept, a dispatch or a delivery changes none of them).
pub async fn save_progress(tx: &mut Tx, parts: &[&PartRow]) -> Result<(), sqlx::Error> {
    if parts.len() > 1
        && let TxInner::Pg(c) = tx.inner_mut()
    {
        let col = |f: fn(&PartRow) -> Option<i64>| parts.iter().map(|p| f(p)).collect::<Vec<_>>();
        sqlx::query(
            "UPDATE fulfilments f SET status = v.status, deadline_ms = v.deadline, delivered_paisa = v.delivered, \
             accepted_at_ms = v.accepted, dispatched_at_ms = v.dispatched, delivered_at_ms = v.delivered_at, \
             updated_at_ms = v.updated \
             FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[]) \
             AS v(id, status, deadline, delivered, accepted, dispatched, delivered_at, updated) WHERE f.id = v.id",
        )
        .bind(parts.iter().map(|p| p.id).collect::<Vec<_>>())
        .bind(parts.iter().map(|p| p.status.as_str()).collect::<Vec<_>>())
        .bind(col(|p| p.deadline_ms))
        .bind(col(|p| p.delivered_paisa))
        .bind(col(|p| p.accepted_at_ms))
        .bind(col(|p| p.dispatched_at_ms))
        .bind(col(|p| p.delivered_at_ms))
        .bind(parts.iter().map(|p| p.updated_at_ms).collect::<Vec<_>>())
        .execute(&mut **c)
        .await?;
        return Ok(());
    }
    for p in parts {
        save_part(tx, p).await?;
    }
    Ok(())
}

/// Lines of `parts`, by part and line number.
pub async fn lines_tx(tx: &mut Tx, parts: &[Uuid]) -> Result<Vec<PartLineRow>, sqlx::Error> {
    if parts.is_empty() {
        return Ok(Vec::new());
    }
    with_tx!(tx, c => {
        let mut qb = sqlx::QueryBuilder::new(
            "SELECT fulfilment_id, line_no, product_id, qty_milli, unit, unit_price_paisa, reserved_milli, delivered_milli \
             FROM");
        push_rows_by(&mut qb, "fulfilment_lines", "l", "fulfilment_id", parts, None);
        qb.push(" ORDER BY fulfilment_id, line_no");
        qb.build_query_as::<PartLineRow>().fetch_all(c).await
    })
}

/// Lines of `parts` as last committed (one index probe per part: planned once).
pub async fn lines(db: &Db, parts: &[Uuid]) -> Result<Vec<PartLineRow>, sqlx::Error> {
    if parts.is_empty() {
        return Ok(Vec::new());
    }
    with_keyed!(db, c => {
        let mut qb = sqlx::QueryBuilder::new(
            "SELECT fulfilment_id, line_no, product_id, qty_milli, unit, unit_price_paisa, reserved_milli, delivered_milli \
             FROM");
        push_rows_by(&mut qb, "fulfilment_lines", "l", "fulfilment_id", parts, None);
        qb.push(" ORDER BY fulfilment_id, line_no");
        qb.build_query_as::<PartLineRow>().fetch_all(c).await
    })
}

/// Writes a line's reserved and delivered quantities.
pub async fn save_line(tx: &mut Tx, l: &PartLineRow) -> Result<(), sqlx::Error> {
    with_tx!(tx, c => sqlx::query(
        "UPDATE fulfilment_lines SET reserved_milli = $1, delivered_milli = $2 WHERE fulfilment_id = $3 AND line_no = $4")
        .bind(l.reserved_milli).bind(l.delivered_milli).bind(l.fulfilment_id).bind(l.line_no)
        .execute(c).await.map(|r| r.rows_affected()))?;
    Ok(())
}

/// Writes the reserved and delivered quantities of `lines`: one statement on PostgreSQL
/// whatever their number (an accept, a delivery or a cancellation writes every line of its
/// part).
pub async fn save_lines(tx: &mut Tx, lines: &[PartLineRow]) -> Result<(), sqlx::Error> {
    if lines.len() > 1
        && let TxInner::Pg(c) = tx.inner_mut()
    {
        let ids: Vec<Uuid> = lines.iter().map(|l| l.fulfilment_id).collect();
        let nos: Vec<i32> = lines.iter().map(|l| l.line_no).collect();
        let reserved: Vec<i64> = lines.iter().map(|l| l.reserved_milli).collect();
        let delivered: Vec<Option<i64>> = lines.iter().map(|l| l.delivered_milli).collect();
        sqlx::query(
            "UPDATE fulfilment_lines l SET reserved_milli = v.r, delivered_milli = v.d \
             FROM unnest($1::uuid[], $2::integer[], $3::bigint[], $4::bigint[]) AS v(f, n, r, d) \
             WHERE l.fulfilment_id = v.f AND l.line_no = v.n",
        )
        .bind(ids)
        .bind(nos)
        .bind(reserved)
        .bind(delivered)
        .execute(&mut **c)
        .await?;
        return Ok(());
    }
    for l in lines {
        save_line(tx, l).await?;
    }
    Ok(())
}

/// Offers of `parts`, oldest first.
pub async fn offers(db: &Db, parts: &[Uuid]) -> Result<Vec<PartOfferRow>, sqlx::Error> {
    if parts.is_empty() {
        return Ok(Vec::new());
    }
    with_keyed!(db, c => {
        let mut qb = sqlx::QueryBuilder::new(format!("SELECT {OFFER_COLS} FROM"));
        push_rows_by(&mut qb, "fulfilment_offers", "o", "fulfilment_id", parts, None);
        qb.push(" ORDER BY fulfilment_id, offered_at_ms, id");
        qb.build_query_as::<PartOfferRow>().fetch_all(c).await
    })
}

/// Offers of `parts`, oldest first, in `tx` (as this transaction leaves them).
pub async fn offers_tx(tx: &mut Tx, parts: &[Uuid]) -> Result<Vec<PartOfferRow>, sqlx::Error> {
    if parts.is_empty() {
        return Ok(Vec::new());
    }
    with_tx!(tx, c => {
        let mut qb = sqlx::QueryBuilder::new(format!("SELECT {OFFER_COLS} FROM"));
        push_rows_by(&mut qb, "fulfilment_offers", "o", "fulfilment_id", parts, None);
        qb.push(" ORDER BY fulfilment_id, offered_at_ms, id");
        qb.build_query_as::<PartOfferRow>().fetch_all(c).await
    })
}

/// Parts by id as last committed (ids not found are left out; any order).
pub async fn find_many(db: &Db, ids: &[Uuid]) -> Result<Vec<PartRow>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    with_latest!(db, c => {
        let mut qb = sqlx::QueryBuilder::new(format!("SELECT {PART_COLS} FROM fulfilments WHERE"));
        push_ids(&mut qb, "id", ids);
        qb.build_query_as::<PartRow>().fetch_all(c).await
    })
}

/// One part as last committed (by key: planned once).
pub async fn find(db: &Db, id: Uuid) -> Result<Option<PartRow>, sqlx::Error> {
    let sql = format!("SELECT {PART_COLS} FROM fulfilments WHERE id = $1");
    with_keyed!(db, c => sqlx::query_as::<_, PartRow>(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(c).await)
}

/// A part with one of its lines (none for a part without lines).
#[derive(sqlx::FromRow)]
struct PartWithLine {
    #[sqlx(flatten)]
    part: PartRow,
    l_line_no: Option<i32>,
    l_product_id: Option<Uuid>,
    l_qty_milli: Option<i64>,
    l_unit: Option<String>,
    l_unit_price_paisa: Option<i64>,
    l_reserved_milli: Option<i64>,
    l_delivered_milli: Option<i64>,
}

/// The parts of one order as last committed, by id, with their lines by part and line
/// number: one statement (by the order's key: planned once; the few rows are sorted here,
/// as an `ORDER BY` could be planned as a walk of a whole index).
pub async fn of_order_with_lines(
    db: &Db,
    order: Uuid,
) -> Result<(Vec<PartRow>, Vec<PartLineRow>), sqlx::Error> {
    // The parts' columns and the lines' share no name, so the part's need no table prefix.
    let sql = format!(
        "SELECT {PART_COLS}, l.line_no AS l_line_no, l.product_id AS l_product_id, l.qty_milli AS l_qty_milli, \
         l.unit AS l_unit, l.unit_price_paisa AS l_unit_price_paisa, l.reserved_milli AS l_reserved_milli, \
         l.delivered_milli AS l_delivered_milli \
         FROM fulfilments f LEFT JOIN fulfilment_lines l ON l.fulfilment_id = f.id WHERE f.order_id = $1"
    );
    let rows = with_keyed!(db, c => sqlx::query_as::<_, PartWithLine>(sqlx::AssertSqlSafe(sql)).bind(order).fetch_all(c).await)?;
    let mut parts: Vec<PartRow> = Vec::new();
    let mut lines = Vec::with_capacity(rows.len());
    for r in rows {
        if let (
            Some(line_no),
            Some(product_id),
            Some(qty_milli),
            Some(unit),
            Some(unit_price_paisa),
            Some(reserved_milli),
        ) = (
            r.l_line_no,
            r.l_product_id,
            r.l_qty_milli,
            r.l_unit,
            r.l_unit_price_paisa,
            r.l_reserved_milli,
        ) {
            lines.push(PartLineRow {
                fulfilment_id: r.part.id,
                line_no,
                product_id,
                qty_milli,
                unit,
                unit_price_paisa,
                reserved_milli,
                delivered_milli: r.l_delivered_milli,
            });
        }
        if !parts.iter().any(|p| p.id == r.part.id) {
            parts.push(r.part);
        }
    }
    parts.sort_unstable_by_key(|p| p.id);
    lines.sort_unstable_by_key(|l| (l.fulfilment_id, l.line_no));
    Ok((parts, lines))
}

/// A page of parts, newest first: a vendor's own (`vendor`), or all; optionally one status.
pub async fn list(
    db: &Db,
    vendor: Option<Uuid>,
    status: Option<&str>,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<PartRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {PART_COLS} FROM fulfilments WHERE ($1 IS NULL OR vendor_id = $1) AND ($2 IS NULL OR status = $2) \
         AND ($3 IS NULL OR id < $3) ORDER BY id DESC LIMIT $4"
    );
    with_replica!(db, c => sqlx::query_as::<_, PartRow>(sqlx::AssertSqlSafe(sql))
        .bind(vendor).bind(status).bind(before).bind(limit)
        .fetch_all(c).await)
}

/// Orders with an offer past its deadline at `now_ms` (at most `limit`), oldest deadline
/// first.
pub async fn orders_with_expired_offers(
    db: &Db,
    now_ms: i64,
    limit: i64,
) -> Result<Vec<Uuid>, sqlx::Error> {
    let rows: Vec<(Uuid,)> = with_latest!(db, c => sqlx::query_as(
        "SELECT order_id FROM fulfilments WHERE status = 'offered' AND deadline_ms <= $1 ORDER BY deadline_ms LIMIT $2")
        .bind(now_ms).bind(limit).fetch_all(c).await)?;
    let mut ids: Vec<Uuid> = rows.into_iter().map(|r| r.0).collect();
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

/// A routing decision to store.
pub struct NewDecision {
    /// The order.
    pub order_id: Uuid,
    /// The part, for a reassignment.
    pub fulfilment_id: Option<Uuid>,
    /// `routed`, `reassigned` or `no_vendor`.
    pub outcome: &'static str,
    /// For a person.
    pub reason: String,
    /// Candidates, scores and plan as shown, as JSON text ([`decision_json`]): written as it
    /// was serialized, never built into a `serde_json::Value` first nor parsed again by the
    /// database (a `json` column, not `jsonb`: nothing queries inside it).
    pub decision: Box<serde_json::value::RawValue>,
    /// When.
    pub at_ms: i64,
}

/// `shown` as a decision's JSON text. Serializing the plain structs and `json!` values given
/// here does not fail; were it ever to, the decision is stored with `{}` rather than lost with
/// the routing it records.
pub fn decision_json(shown: &impl serde::Serialize) -> Box<serde_json::value::RawValue> {
    serde_json::value::to_raw_value(shown).unwrap_or_else(|e| {
        tracing::error!(error = %e, "a routing decision could not be serialized");
        serde_json::value::RawValue::from_string("{}".into()).expect("{} is JSON")
    })
}

/// Stores routing decisions.
pub async fn insert_decisions(tx: &mut Tx, decisions: &[NewDecision]) -> Result<(), sqlx::Error> {
    for chunk in decisions.chunks(CHUNK) {
        with_tx!(tx, c => {
            let mut qb = sqlx::QueryBuilder::new("");
            push_decisions!(qb, chunk);
            qb.build_batch().execute(&mut *c).await?;
        });
    }
    Ok(())
}

/// A stored routing decision.
#[derive(Clone, Debug, sqlx::FromRow, serde::Deserialize)]
pub struct DecisionRow {
    /// The part, for a reassignment.
    pub fulfilment_id: Option<Uuid>,
    /// `routed`, `reassigned` or `no_vendor`.
    pub outcome: String,
    /// For a person.
    pub reason: String,
    /// Candidates, scores and plan.
    pub decision: Json<serde_json::Value>,
    /// When.
    pub at_ms: i64,
}

/// An order's routing decisions, oldest first.
pub async fn decisions(db: &Db, order: Uuid) -> Result<Vec<DecisionRow>, sqlx::Error> {
    with_latest!(db, c => sqlx::query_as::<_, DecisionRow>(
        "SELECT fulfilment_id, outcome, reason, decision, at_ms FROM routing_decisions WHERE order_id = $1 ORDER BY at_ms, id")
        .bind(order).fetch_all(c).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sql_status_lists_follow_the_rules() {
        let sql = |rule: fn(PartStatus) -> bool| {
            let names: Vec<String> = PartStatus::ALL
                .into_iter()
                .filter(|s| rule(*s))
                .map(|s| format!("'{}'", s.as_str()))
                .collect();
            format!("({})", names.join(", "))
        };
        assert_eq!(OPEN_SQL, sql(PartStatus::is_open));
        assert_eq!(WITHDRAWN_SQL, sql(|s| !s.counts_in_volume()));
    }

    /// Both texts number their parameters in the order `write_routed` binds them: the lines'
    /// five first when present, then the parts', offers', lines' and decisions' columns, the
    /// decision's JSON sixth of the decisions' seven.
    #[test]
    fn routed_statement_numbers_its_parameters_in_bind_order() {
        for (lines, first) in [(true, 6), (false, 1)] {
            let sql = routed_sql(lines);
            let last = first + 40;
            assert!(sql.contains(&format!("${first}::uuid[]")), "{sql}");
            assert!(
                sql.contains(&format!("${}::text[]::json[]", last - 1)),
                "{sql}"
            );
            assert!(
                sql.contains(&format!("${last}::bigint[])) SELECT 1")),
                "{sql}"
            );
            assert!(!sql.contains(&format!("${}::", last + 1)), "{sql}");
            assert_eq!(sql.contains("UPDATE order_lines"), lines, "{sql}");
        }
    }
}
