-- Credit and risk (DESIGN §11, DOMAIN "Credit" and "Risk"): one account per retailer with
-- counters, one hold per order, an append-only ledger with a running balance, payments,
-- limit changes, risk assessments and alerts. Money is integer paisa, times epoch ms.

-- How the order is paid: on credit (a hold is reserved at validation) or cash on delivery.
ALTER TABLE orders ADD COLUMN payment_mode text NOT NULL DEFAULT 'credit';

CREATE TABLE credit_accounts (
    retailer_id          uuid PRIMARY KEY CONSTRAINT credit_accounts_retailer_fk REFERENCES retailers (id),
    limit_paisa          bigint NOT NULL,
    held_paisa           bigint NOT NULL DEFAULT 0,   -- sum of pending holds
    outstanding_paisa    bigint NOT NULL DEFAULT 0,   -- posted, unpaid debits
    credit_balance_paisa bigint NOT NULL DEFAULT 0,   -- paid beyond what was owed, settles the next debit
    status               text NOT NULL DEFAULT 'active', -- active | blocked
    terms_days           integer NOT NULL DEFAULT 30,
    score                integer,                     -- 300..900, NULL until first scored
    band                 text,                        -- excellent | good | fair | poor | very_poor; NULL: unrated
    original_limit_paisa bigint NOT NULL,             -- the limit before automatic cuts (caps them at -50%)
    late_streak          integer NOT NULL DEFAULT 0,  -- consecutive late payments since the last cut
    limit_changed_at_ms  bigint,                      -- last automatic change (at most one per 30 days)
    last_seq             bigint NOT NULL DEFAULT 0,   -- sequence of the newest ledger entry
    order_count          bigint NOT NULL DEFAULT 0,   -- credit orders reserved, for averages
    order_value_paisa    bigint NOT NULL DEFAULT 0,   -- their total value
    created_at_ms        bigint NOT NULL,
    updated_at_ms        bigint NOT NULL,
    -- The limit itself is checked by the reserving UPDATE (held + outstanding + amount <=
    -- limit), which serialises concurrent holds on this row; an operator's override may go
    -- past it, so the constraint guards the counters' signs only.
    CONSTRAINT credit_accounts_counters CHECK (held_paisa >= 0 AND outstanding_paisa >= 0
        AND credit_balance_paisa >= 0 AND limit_paisa >= 0)
);

CREATE TABLE credit_holds (
    order_id      uuid PRIMARY KEY,               -- one hold per order
    retailer_id   uuid NOT NULL,
    amount_paisa  bigint NOT NULL CONSTRAINT credit_holds_amount_positive CHECK (amount_paisa > 0),
    status        text NOT NULL,                    -- pending | posted | voided | expired
    override_by   text,                             -- who approved it past the limit
    posted_paisa  bigint,                           -- delivered amount, once posted
    created_at_ms bigint NOT NULL,
    updated_at_ms bigint NOT NULL
);
CREATE INDEX credit_holds_pending_idx ON credit_holds (retailer_id) WHERE status = 'pending';

CREATE TABLE payments (
    id            uuid PRIMARY KEY,
    retailer_id   uuid NOT NULL,
    amount_paisa  bigint NOT NULL CONSTRAINT payments_amount_positive CHECK (amount_paisa > 0),
    method        text NOT NULL,                    -- cash | bank | wallet | cheque
    reference     text NOT NULL,                    -- the provider's or receipt reference
    recorded_by   text NOT NULL,
    at_ms         bigint NOT NULL,
    CONSTRAINT payments_reference_key UNIQUE (retailer_id, reference)
);

-- Append-only: rows are never updated except `open_paisa` (a debit's unpaid rest, lowered by
-- payment allocation) and `paid_at_ms` (when it reached zero).
CREATE TABLE ledger_entries (
    id            uuid PRIMARY KEY,
    retailer_id   uuid NOT NULL,
    seq           bigint NOT NULL,                  -- per account, from 1
    kind          text NOT NULL,                    -- order_debit | payment_credit | refund_credit | adjustment_debit | adjustment_credit
    amount_paisa  bigint NOT NULL,                  -- signed: debits positive, credits negative
    balance_paisa bigint NOT NULL,                  -- running balance (owed minus credit) after this entry
    order_id      uuid,
    payment_id    uuid,
    due_at_ms     bigint,                           -- debits: delivery + terms
    open_paisa    bigint,                           -- debits: still unpaid
    paid_at_ms    bigint,                           -- debits: when fully paid
    note          text,
    at_ms         bigint NOT NULL,
    CONSTRAINT ledger_entries_seq_key UNIQUE (retailer_id, seq)
);
-- One delivery debit and one reversal per order: posting is idempotent per order.
CREATE UNIQUE INDEX ledger_entries_order_kind_key ON ledger_entries (order_id, kind)
    WHERE order_id IS NOT NULL AND kind IN ('order_debit', 'refund_credit');
CREATE INDEX ledger_entries_open_idx ON ledger_entries (retailer_id, due_at_ms) WHERE open_paisa > 0;

CREATE TABLE credit_changes (
    id            uuid PRIMARY KEY,
    retailer_id   uuid NOT NULL,
    field         text NOT NULL,                    -- limit | status
    old_value     text NOT NULL,
    new_value     text NOT NULL,
    reason        text NOT NULL,
    actor         text NOT NULL,
    at_ms         bigint NOT NULL
);
CREATE INDEX credit_changes_retailer_idx ON credit_changes (retailer_id, at_ms);

CREATE TABLE risk_assessments (
    order_id      uuid PRIMARY KEY,
    retailer_id   uuid NOT NULL,
    score         integer NOT NULL,                 -- 0..100
    decision      text NOT NULL,                    -- pass | review | reject
    components    jsonb NOT NULL,                  -- [{name, weight, points}]
    reasons       jsonb NOT NULL,                  -- [{code, text}]
    at_ms         bigint NOT NULL
);

