//! The platform's operating mode (DOMAIN "Safe mode and degradation"), one row in the
//! database (`platform_mode`) so every process follows it, and a copy in each process that
//! the hot paths read without a query (the queue's consumers before each claim, the HTTP
//! middleware on each request, the parser before calling an LLM):
//!
//! - **safe mode** (an admin's switch): orders are still accepted and stored, the order
//!   pipeline's queues are not claimed; switching it off resumes them in their order;
//! - **degradation level** (set by the minute check from queue age, p95 latency and error
//!   rate, with hysteresis): `normal`; `degraded` — no LLM calls, no price intelligence;
//!   `critical` — for customers (retailers, vendors) intake and status only.
//!
//! A process refreshes its copy every second (`refresh`); the process that changes the mode
//! updates its copy at once, and a refresh whose read was under way meanwhile is not taken
//! (it may have read the row from before the change, and would undo it here for a second:
//! the queues would claim in safe mode).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::db::{Db, Tx};
use crate::{with_latest, with_tx};

/// The queues safe mode pauses: the order pipeline's steps.
pub const PAUSED_IN_SAFE_MODE: [&str; 3] = ["orders", "validate", "route"];

/// How degraded the platform runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Everything on.
    Normal,
    /// No LLM calls, no price intelligence.
    Degraded,
    /// Customers: intake and status only.
    Critical,
}

impl Level {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Normal => "normal",
            Level::Degraded => "degraded",
            Level::Critical => "critical",
        }
    }

    /// Parses a stored name (anything unknown is `normal`).
    pub fn parse(s: &str) -> Self {
        match s {
            "degraded" => Level::Degraded,
            "critical" => Level::Critical,
            _ => Level::Normal,
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            1 => Level::Degraded,
            2 => Level::Critical,
            _ => Level::Normal,
        }
    }

    /// The gauge value (0, 1, 2).
    pub fn as_u8(self) -> u8 {
        self as u8
    }
}

/// The stored mode.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct ModeRow {
    /// Safe mode on.
    pub safe_mode: bool,
    /// Who switched it last.
    pub safe_mode_by: Option<String>,
    /// Why.
    pub safe_mode_reason: Option<String>,
    /// When (epoch ms).
    pub safe_mode_at_ms: Option<i64>,
    /// `normal`, `degraded` or `critical`.
    pub level: String,
    /// Since when (epoch ms).
    pub level_at_ms: Option<i64>,
    /// Consecutive minute checks that found a lower level (hysteresis).
    pub calm_checks: i32,
}

/// A refresh under way (see [`Mode::reading`]).
#[derive(Clone, Copy, Debug)]
pub struct Reading(u64);

/// This process's copy of the mode.
#[derive(Debug, Default)]
pub struct Mode {
    safe: AtomicBool,
    level: AtomicU8,
    /// Changes this process made (`set`): a refresh takes its read only if none came
    /// while it read.
    changes: Mutex<u64>,
}

impl Mode {
    /// Whether safe mode is on.
    pub fn safe_mode(&self) -> bool {
        self.safe.load(Ordering::Relaxed)
    }

    /// The degradation level.
    pub fn level(&self) -> Level {
        Level::from_u8(self.level.load(Ordering::Relaxed))
    }

    /// Whether LLM providers may be called.
    pub fn llm_allowed(&self) -> bool {
        self.level() == Level::Normal
    }

    /// Whether the queue's consumers hold off claiming.
    pub fn paused(&self, queue: &str) -> bool {
        self.safe_mode() && PAUSED_IN_SAFE_MODE.contains(&queue)
    }

    /// Takes `row`, just written by this process, as this process's mode.
    pub fn set(&self, row: &ModeRow) {
        let mut changes = self.changes.lock().unwrap_or_else(|e| e.into_inner());
        *changes += 1;
        self.apply(row);
    }

    /// Takes the stored mode as this process's, with the gauges.
    fn apply(&self, row: &ModeRow) {
        let level = Level::parse(&row.level);
        self.safe.store(row.safe_mode, Ordering::Relaxed);
        self.level.store(level.as_u8(), Ordering::Relaxed);
        metrics::gauge!("khaacho_safe_mode").set(if row.safe_mode { 1.0 } else { 0.0 });
        metrics::gauge!("khaacho_degradation_level").set(f64::from(level.as_u8()));
    }

    /// Reads the stored mode into this process's copy.
    pub async fn refresh(&self, db: &Db) -> Result<ModeRow, sqlx::Error> {
        let reading = self.reading();
        let row = read(db).await?;
        self.read_done(reading, &row);
        Ok(row)
    }

    /// A refresh begins: what [`Mode::read_done`] needs to tell whether this process
    /// switched the mode while the row was read.
    pub fn reading(&self) -> Reading {
        Reading(*self.changes.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// A refresh's read returned `row`: taken as this process's mode unless this process
    /// switched the mode since [`Mode::reading`] (the row may be from before the switch).
    /// Returns whether it was taken.
    pub fn read_done(&self, reading: Reading, row: &ModeRow) -> bool {
        let changes = self.changes.lock().unwrap_or_else(|e| e.into_inner());
        let taken = *changes == reading.0;
        if taken {
            self.apply(row);
        }
        taken
    }
}

/// The stored mode, as the primary has it.
pub async fn read(db: &Db) -> Result<ModeRow, sqlx::Error> {
    with_latest!(db, c => sqlx::query_as::<_, ModeRow>(
        "SELECT safe_mode, safe_mode_by, safe_mode_reason, safe_mode_at_ms, level, level_at_ms, calm_checks \
         FROM platform_mode WHERE id = 1")
        .fetch_one(c).await)
}

/// The stored mode, locked for a change in `tx`.
pub async fn lock(tx: &mut Tx) -> Result<ModeRow, sqlx::Error> {
    // SQLite's one writer serialises the change already; PostgreSQL locks the row.
    let sql = if tx.is_postgres() {
        "SELECT safe_mode, safe_mode_by, safe_mode_reason, safe_mode_at_ms, level, level_at_ms, calm_checks \
         FROM platform_mode WHERE id = 1 FOR UPDATE"
    } else {
        "SELECT safe_mode, safe_mode_by, safe_mode_reason, safe_mode_at_ms, level, level_at_ms, calm_checks \
         FROM platform_mode WHERE id = 1"
    };
    with_tx!(tx, c => sqlx::query_as::<_, ModeRow>(sql).fetch_one(&mut *c).await)
}

/// Writes `row` in `tx`.
pub async fn write(tx: &mut Tx, row: &ModeRow, now: i64) -> Result<(), sqlx::Error> {
    with_tx!(tx, c => sqlx::query(
        "UPDATE platform_mode SET safe_mode = $1, safe_mode_by = $2, safe_mode_reason = $3, safe_mode_at_ms = $4, \
         level = $5, level_at_ms = $6, calm_checks = $7, updated_at_ms = $8 WHERE id = 1")
        .bind(row.safe_mode).bind(&row.safe_mode_by).bind(&row.safe_mode_reason).bind(row.safe_mode_at_ms)
        .bind(&row.level).bind(row.level_at_ms).bind(row.calm_checks).bind(now)
        .execute(&mut *c).await.map(|_| ()))
}
