-- Paper trading: accounts, and what a configuration needs to trade exactly as it was backtested.
--
-- * A paper account has a starting balance; each active configuration trades a sub-account of it holding its
--   `allocation`. Activation refuses an allocation the account's unallocated balance cannot cover.
-- * `execution` and `risk` are the simulator and sizing settings the configuration was trained with
--   (agents.execution.ExecutionConfig and RiskConfig fields); paper trading uses the same, so a paper session and
--   a backtest of the same candles agree.
-- * `status` is what the workers report: inactive, starting, running, stopping, stopped or error (with
--   status_reason).

CREATE TABLE accounts (
    id               text PRIMARY KEY,
    user_id          text             REFERENCES users (id) ON DELETE CASCADE,
    name             text             NOT NULL,
    mode             text             NOT NULL DEFAULT 'paper' CHECK (mode IN ('paper', 'live')),
    starting_balance double precision NOT NULL CHECK (starting_balance > 0),
    currency         text             NOT NULL DEFAULT 'USD',
    created_at       timestamptz      NOT NULL DEFAULT now(),
    UNIQUE (user_id, name)
);

ALTER TABLE trained_configurations
    ADD COLUMN allocation double precision NOT NULL DEFAULT 10000 CHECK (allocation > 0),
    ADD COLUMN execution  jsonb            NOT NULL DEFAULT '{}',
    ADD COLUMN risk       jsonb            NOT NULL DEFAULT '{}',
    ADD COLUMN status_at  timestamptz;

ALTER TABLE trained_configurations ADD CONSTRAINT trained_configurations_status_check
    CHECK (status IN ('inactive', 'starting', 'running', 'stopping', 'stopped', 'error'));

-- An exit order's size is the position's, known only where the position is (the fill stage): 0 until filled.
ALTER TABLE orders DROP CONSTRAINT orders_quantity_check;
ALTER TABLE orders ADD CONSTRAINT orders_quantity_check CHECK (quantity >= 0);
