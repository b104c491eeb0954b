//! Safe mode and degradation (see `base::mode`): the admin's switch and the operators' view
//! over HTTP, and the level the minute check ([`evaluate`], called by `admin::sla`) derives
//! from queue age, p95 latency and error rate. A level rises at once and falls one step
//! only after `ops.calm_checks` consecutive checks found it lower, so it does not flap.
//! Every change is logged, metered (`khaacho_safe_mode`, `khaacho_degradation_level`,
//! `khaacho_mode_changes_total`) and audited.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::App;
use crate::base::audit::{self, Entry};
use crate::base::mode::{self, Level, ModeRow, PAUSED_IN_SAFE_MODE};
use crate::base::principal::{ADMIN, Principal, STAFF};
use crate::base::time::fmt_time;
use crate::base::wire::error::{ApiError, FieldError, Problem};
use crate::base::wire::extract::Json;

/// Routes of the mode.
pub fn router() -> OpenApiRouter<App> {
    OpenApiRouter::new()
        .routes(routes!(get_mode))
        .routes(routes!(set_safe_mode))
}

/// The operating mode as operators see it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ModeView {
    /// Safe mode: orders are accepted and stored, the order pipeline waits.
    pub safe_mode: bool,
    /// Who switched safe mode last.
    pub safe_mode_by: Option<String>,
    /// Their reason.
    pub safe_mode_reason: Option<String>,
    /// When (Nepal time).
    pub safe_mode_since: Option<String>,
    /// The queues safe mode pauses.
    pub paused_queues: Vec<String>,
    /// `normal`, `degraded` (no LLM calls, no price intelligence) or `critical` (customers:
    /// intake and status only).
    pub level: Level,
    /// Since when (Nepal time).
    pub level_since: Option<String>,
}

fn view(row: &ModeRow) -> ModeView {
    ModeView {
        safe_mode: row.safe_mode,
        safe_mode_by: row.safe_mode_by.clone(),
        safe_mode_reason: row.safe_mode_reason.clone(),
        safe_mode_since: row.safe_mode_at_ms.map(fmt_time),
        paused_queues: if row.safe_mode {
            PAUSED_IN_SAFE_MODE.iter().map(|q| q.to_string()).collect()
        } else {
            vec![]
        },
        level: Level::parse(&row.level),
        level_since: row.level_at_ms.map(fmt_time),
    }
}

/// The operating mode: safe mode and the degradation level.
#[utoipa::path(get, path = "/admin/mode", tag = "admin",
    responses((status = 200, body = ModeView), (status = 403, body = Problem, content_type = "application/problem+json")))]
async fn get_mode(
    State(app): State<App>,
    principal: Principal,
) -> Result<axum::Json<ModeView>, ApiError> {
    principal.require(STAFF)?;
    let row = app.mode().refresh(app.db()).await?;
    Ok(axum::Json(view(&row)))
}

/// Body of `PUT /api/v1/admin/safe-mode`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SafeModeSwitch {
    /// On: the order pipeline pauses (intake goes on); off: it resumes, in order.
    pub enabled: bool,
    /// Why (1–500 characters), kept with the switch and in the audit log.
    pub reason: String,
}

/// Switch safe mode (admin). Orders accepted meanwhile wait, and are processed in their order
/// once it is switched off.
#[utoipa::path(put, path = "/admin/safe-mode", tag = "admin", request_body = SafeModeSwitch,
    responses((status = 200, body = ModeView), (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
async fn set_safe_mode(
    State(app): State<App>,
    principal: Principal,
    body: Result<Json<SafeModeSwitch>, ApiError>,
) -> Result<axum::Json<ModeView>, ApiError> {
    principal.require(ADMIN)?;
    let Json(b) = body?;
    let reason = b.reason.trim();
    if reason.is_empty() || reason.chars().count() > 500 {
        return Err(ApiError::Validation(vec![FieldError::new(
            "reason",
            "reason must be 1 to 500 characters",
        )]));
    }
    let now = app.clock().now_ms();
    let mut tx = app.db().begin().await?;
    let mut row = mode::lock(&mut tx).await?;
    let was = row.safe_mode;
    row.safe_mode = b.enabled;
    row.safe_mode_by = Some(principal.actor());
    row.safe_mode_reason = Some(reason.to_string());
    row.safe_mode_at_ms = Some(now);
    mode::write(&mut tx, &row, now).await?;
    let entry = principal
        .audit("platform.safe_mode")
        .summary(json!({ "enabled": b.enabled, "was": was, "reason": reason }));
    audit::record_tx(&mut tx, &entry).await?;
    tx.commit().await?;
    app.mode().set(&row);
    if b.enabled != was {
        let to = if b.enabled {
            "safe_mode_on"
        } else {
            "safe_mode_off"
        };
        metrics::counter!("khaacho_mode_changes_total", "to" => to).increment(1);
        tracing::warn!(enabled = b.enabled, by = %principal.actor(), reason, "safe mode switched");
        // Resume at once in this process; the others follow within a refresh.
        app.db().wake().wake_all();
    }
    Ok(axum::Json(view(&row)))
}

/// What the measurements call for.
#[derive(Debug, Clone, Copy)]
pub struct Signals {
    /// Oldest ready job of a queue that is not paused, ms.
    pub queue_age_ms: i64,
    /// 5-minute p95, ms (none without traffic).
    pub p95_ms: Option<f64>,
    /// 5-minute share of 5xx, the server's own refusals (`503` when full, behind or
    /// `critical`) left out.
    pub error_rate: f64,
}

/// The level `s` calls for under `ops`.
pub fn target(ops: &crate::config::OpsSettings, s: Signals) -> Level {
    let p95 = s.p95_ms.unwrap_or(0.0);
    if s.queue_age_ms >= ops.critical_queue_age_secs * 1000
        || p95 >= ops.critical_p95_ms
        || s.error_rate >= ops.critical_error_rate
    {
        Level::Critical
    } else if s.queue_age_ms >= ops.degraded_queue_age_secs * 1000
        || p95 >= ops.degraded_p95_ms
        || s.error_rate >= ops.degraded_error_rate
    {
        Level::Degraded
    } else {
        Level::Normal
    }
}

/// The next level from `current` when the measurements call for `wanted`, with the count of
/// consecutive calm checks: up at once, down one step after `calm_needed` calm checks.
pub fn step(current: Level, wanted: Level, calm: i32, calm_needed: i32) -> (Level, i32) {
    if wanted > current {
        (wanted, 0)
    } else if wanted < current {
        let calm = calm + 1;
        if calm >= calm_needed {
            let down = match current {
                Level::Critical => Level::Degraded,
                _ => Level::Normal,
            };
            (down, 0)
        } else {
            (current, calm)
        }
    } else {
        (current, 0)
    }
}

/// Applies the minute check's signals at `now`: stores the new level (and the calm count),
/// and on a change logs, meters and audits it. Returns the change, if any.
pub async fn evaluate(
    app: &App,
    signals: Signals,
    now: i64,
) -> anyhow::Result<Option<(Level, Level)>> {
    let ops = &app.settings().ops;
    let wanted = target(ops, signals);
    let mut tx = app.db().begin().await?;
    let mut row = mode::lock(&mut tx).await?;
    let current = Level::parse(&row.level);
    let (next, calm) = step(current, wanted, row.calm_checks, ops.calm_checks.max(1));
    row.calm_checks = calm;
    let changed = next != current;
    if changed {
        row.level = next.as_str().into();
        row.level_at_ms = Some(now);
        let entry = Entry::new("system", Some("system"), "platform.degradation").summary(json!({
            "from": current.as_str(), "to": next.as_str(),
            "queue_age_ms": signals.queue_age_ms, "p95_ms": signals.p95_ms, "error_rate": signals.error_rate,
        }));
        audit::record_tx(&mut tx, &entry).await?;
    }
    mode::write(&mut tx, &row, now).await?;
    tx.commit().await?;
    app.mode().set(&row);
    if changed {
        metrics::counter!("khaacho_mode_changes_total", "to" => next.as_str()).increment(1);
        tracing::warn!(from = current.as_str(), to = next.as_str(), queue_age_ms = signals.queue_age_ms,
            p95_ms = ?signals.p95_ms, error_rate = signals.error_rate, "degradation level changed");
        return Ok(Some((current, next)));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::{Level, Signals, step, target};

    #[test]
    fn levels_rise_at_once_and_fall_one_step_after_calm_checks() {
        use Level::*;
        assert_eq!(step(Normal, Critical, 0, 3), (Critical, 0));
        assert_eq!(step(Critical, Normal, 0, 3), (Critical, 1));
        assert_eq!(step(Critical, Normal, 1, 3), (Critical, 2));
        assert_eq!(step(Critical, Normal, 2, 3), (Degraded, 0));
        assert_eq!(step(Degraded, Degraded, 2, 3), (Degraded, 0));
        assert_eq!(step(Degraded, Normal, 2, 3), (Normal, 0));
    }

    #[test]
    fn the_worst_signal_sets_the_level() {
        let ops = crate::config::OpsSettings::default();
        let calm = Signals {
            queue_age_ms: 0,
            p95_ms: None,
            error_rate: 0.0,
        };
        assert_eq!(target(&ops, calm), Level::Normal);
        let slow = Signals {
            p95_ms: Some(ops.degraded_p95_ms),
            ..calm
        };
        assert_eq!(target(&ops, slow), Level::Degraded);
        let failing = Signals {
            error_rate: ops.critical_error_rate,
            ..slow
        };
        assert_eq!(target(&ops, failing), Level::Critical);
        let behind = Signals {
            queue_age_ms: ops.critical_queue_age_secs * 1000,
            ..calm
        };
        assert_eq!(target(&ops, behind), Level::Critical);
    }
}
