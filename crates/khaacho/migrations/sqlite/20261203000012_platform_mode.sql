-- The platform's operating mode (DOMAIN "Safe mode and degradation"): one row every process
-- follows. Safe mode pauses the order pipeline's queues (intake goes on); the degradation
-- level is set by the minute check, with hysteresis (calm_checks: consecutive checks that
-- found a lower level).
CREATE TABLE platform_mode (
    id               integer PRIMARY KEY CHECK (id = 1),
    safe_mode        boolean NOT NULL DEFAULT FALSE,
    safe_mode_by     text,
    safe_mode_reason text,
    safe_mode_at_ms  bigint,
    level            text NOT NULL DEFAULT 'normal' CHECK (level IN ('normal', 'degraded', 'critical')),
    level_at_ms      bigint,
    calm_checks      integer NOT NULL DEFAULT 0,
    updated_at_ms    bigint NOT NULL
);
INSERT INTO platform_mode (id, safe_mode, level, calm_checks, updated_at_ms) VALUES (1, FALSE, 'normal', 0, 0);
