-- Core schema: every table the product needs, the same on plain PostgreSQL and on TimescaleDB.
--
-- Conventions
-- * Event tables (signals, orders, fills, trades, portfolio_history, trade_logs, dead_letters) are keyed by the
--   event's stable id (text) so sinks upsert and replays never duplicate rows. Their columns carry the names of the
--   record fields in streams/records.py, so a sink maps a record to a row one to one.
-- * fills, trades, portfolio_history and trade_logs become hypertables where TimescaleDB exists (0002). A
--   hypertable's unique keys must contain its time column, so their primary keys are (event id, time column): the
--   time is part of the event that the id was derived from, so the pair is as unique as the id alone and an upsert
--   of a replayed event still hits the same row. market_data's natural key already ends with ts.
-- * Nothing references a hypertable, and event tables do not reference each other (orders.signal_id,
--   fills.order_id, ...): each is written by its own sink, in no guaranteed order across topics. They do reference
--   trained_configurations, whose row the API writes before it publishes the configuration.
-- * All times are timestamptz (UTC). Prices and quantities are double precision, as they are on the log.

CREATE FUNCTION touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

-- ------------------------------------------------------------------------------------------- people and access

CREATE TABLE users (
    id            text PRIMARY KEY DEFAULT gen_random_uuid()::text,
    email         text        NOT NULL,
    display_name  text        NOT NULL DEFAULT '',
    password_hash text,
    role          text        NOT NULL DEFAULT 'trader' CHECK (role IN ('admin', 'trader', 'viewer')),
    is_active     boolean     NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));
CREATE TRIGGER users_touch BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

-- API keys never live here in plaintext: credential_ref points into a secret store (or names an envelope-encrypted
-- blob held elsewhere); key_hint keeps the last characters of the key so a person can tell connections apart.
CREATE TABLE exchange_connections (
    id             text PRIMARY KEY DEFAULT gen_random_uuid()::text,
    user_id        text        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    exchange       text        NOT NULL,
    label          text        NOT NULL DEFAULT 'default',
    mode           text        NOT NULL DEFAULT 'paper' CHECK (mode IN ('paper', 'live')),
    credential_ref text        NOT NULL,
    key_hint       text        NOT NULL DEFAULT '',
    is_active      boolean     NOT NULL DEFAULT true,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, exchange, label)
);
CREATE TRIGGER exchange_connections_touch BEFORE UPDATE ON exchange_connections
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

-- ------------------------------------------------------------------------------------------------ market data

CREATE TABLE market_data (
    exchange    text             NOT NULL,
    symbol      text             NOT NULL,
    timeframe   text             NOT NULL CHECK (timeframe IN ('1m', '5m', '15m', '1h', '4h', '1d')),
    ts          timestamptz      NOT NULL,
    open        double precision NOT NULL,
    high        double precision NOT NULL,
    low         double precision NOT NULL,
    close       double precision NOT NULL,
    volume      double precision NOT NULL DEFAULT 0,
    trades      integer          NOT NULL DEFAULT 0,
    source      text             NOT NULL DEFAULT '',
    ingested_at timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (exchange, symbol, timeframe, ts),
    CHECK (low > 0 AND low <= high AND volume >= 0 AND trades >= 0)
);

-- ------------------------------------------------------------------------------------------ training results

CREATE TABLE trained_configurations (
    id                     text PRIMARY KEY DEFAULT gen_random_uuid()::text,
    user_id                text        REFERENCES users (id) ON DELETE SET NULL,
    strategy               text        NOT NULL,
    params                 jsonb       NOT NULL DEFAULT '{}',
    exchange               text        NOT NULL,
    symbols                text[]      NOT NULL CHECK (cardinality(symbols) > 0),
    timeframe              text        NOT NULL,
    account_id             text        NOT NULL DEFAULT 'paper',
    stage                  text        NOT NULL DEFAULT 'DISCOVERY'
                                       CHECK (stage IN ('DISCOVERY', 'VALIDATION', 'MATURE')),
    is_active              boolean     NOT NULL DEFAULT false,
    on_deactivate          text        NOT NULL DEFAULT 'close' CHECK (on_deactivate IN ('close', 'keep')),
    in_sample_metrics      jsonb       NOT NULL DEFAULT '{}',
    out_of_sample_metrics  jsonb       NOT NULL DEFAULT '{}',
    walk_forward_metrics   jsonb       NOT NULL DEFAULT '{}',
    data_start             timestamptz,
    data_end               timestamptz,
    data_hash              text,
    code_version           text,
    status                 text        NOT NULL DEFAULT 'inactive',
    status_reason          text        NOT NULL DEFAULT '',
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    CHECK (data_start IS NULL OR data_end IS NULL OR data_start < data_end)
);
CREATE INDEX trained_configurations_user_idx ON trained_configurations (user_id);
CREATE INDEX trained_configurations_strategy_idx ON trained_configurations (strategy, stage);
CREATE INDEX trained_configurations_active_idx ON trained_configurations (exchange, timeframe) WHERE is_active;
CREATE TRIGGER trained_configurations_touch BEFORE UPDATE ON trained_configurations
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

CREATE TABLE optimization_trials (
    study            text        NOT NULL,
    trial_number     integer     NOT NULL CHECK (trial_number >= 0),
    strategy         text        NOT NULL,
    params           jsonb       NOT NULL DEFAULT '{}',
    metrics          jsonb       NOT NULL DEFAULT '{}',
    objective        double precision,
    state            text        NOT NULL DEFAULT 'RUNNING'
                                 CHECK (state IN ('RUNNING', 'WAITING', 'COMPLETE', 'PRUNED', 'FAIL')),
    data_start       timestamptz,
    data_end         timestamptz,
    configuration_id text        REFERENCES trained_configurations (id) ON DELETE SET NULL,
    started_at       timestamptz NOT NULL DEFAULT now(),
    completed_at     timestamptz,
    PRIMARY KEY (study, trial_number)
);
CREATE INDEX optimization_trials_configuration_idx ON optimization_trials (configuration_id);

CREATE TABLE backtest_runs (
    id               text PRIMARY KEY DEFAULT gen_random_uuid()::text,
    configuration_id text        REFERENCES trained_configurations (id) ON DELETE SET NULL,
    strategy         text        NOT NULL,
    params           jsonb       NOT NULL DEFAULT '{}',
    exchange         text        NOT NULL,
    symbols          text[]      NOT NULL,
    timeframe        text        NOT NULL,
    data_start       timestamptz NOT NULL,
    data_end         timestamptz NOT NULL,
    data_hash        text,
    code_version     text,
    initial_cash     double precision NOT NULL DEFAULT 10000,
    metrics          jsonb       NOT NULL DEFAULT '{}',
    status           text        NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'completed', 'failed')),
    error            text,
    started_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz
);
CREATE INDEX backtest_runs_configuration_idx ON backtest_runs (configuration_id, started_at DESC);

-- ------------------------------------------------------------------------------------------- trading events

CREATE TABLE signals (
    signal_id        text             PRIMARY KEY,
    ts               timestamptz      NOT NULL,
    configuration_id text             NOT NULL REFERENCES trained_configurations (id),
    exchange         text             NOT NULL,
    symbol           text             NOT NULL,
    timeframe        text             NOT NULL,
    intent           text             NOT NULL,
    side             text             NOT NULL,
    price            double precision NOT NULL,
    stop_loss        double precision,
    take_profit      double precision,
    reason           text             NOT NULL DEFAULT '',
    ingested_at      timestamptz      NOT NULL DEFAULT now()
);
CREATE INDEX signals_configuration_idx ON signals (configuration_id, ts DESC);
CREATE INDEX signals_instrument_idx ON signals (exchange, symbol, ts DESC);

CREATE TABLE orders (
    order_id          text             PRIMARY KEY,
    ts                timestamptz      NOT NULL,
    configuration_id  text             NOT NULL REFERENCES trained_configurations (id),
    account_id        text             NOT NULL,
    exchange          text             NOT NULL,
    symbol            text             NOT NULL,
    side              text             NOT NULL,
    order_type        text             NOT NULL,
    quantity          double precision NOT NULL CHECK (quantity > 0),
    price             double precision,
    stop_loss         double precision,
    take_profit       double precision,
    signal_id         text,
    mode              text             NOT NULL DEFAULT 'paper' CHECK (mode IN ('paper', 'live')),
    status            text             NOT NULL DEFAULT 'submitted',
    filled_quantity   double precision NOT NULL DEFAULT 0,
    exchange_order_id text,
    ingested_at       timestamptz      NOT NULL DEFAULT now(),
    updated_at        timestamptz      NOT NULL DEFAULT now()
);
CREATE INDEX orders_configuration_idx ON orders (configuration_id, ts DESC);
CREATE INDEX orders_account_idx ON orders (account_id, ts DESC);
CREATE INDEX orders_instrument_idx ON orders (exchange, symbol, ts DESC);
CREATE INDEX orders_signal_idx ON orders (signal_id);
CREATE TRIGGER orders_touch BEFORE UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

CREATE TABLE fills (
    fill_id          text             NOT NULL,
    ts               timestamptz      NOT NULL,
    order_id         text             NOT NULL,
    configuration_id text             NOT NULL REFERENCES trained_configurations (id),
    account_id       text             NOT NULL,
    exchange         text             NOT NULL,
    symbol           text             NOT NULL,
    side             text             NOT NULL,
    quantity         double precision NOT NULL CHECK (quantity > 0),
    price            double precision NOT NULL CHECK (price > 0),
    fee              double precision NOT NULL DEFAULT 0,
    fee_currency     text             NOT NULL DEFAULT '',
    mode             text             NOT NULL DEFAULT 'paper' CHECK (mode IN ('paper', 'live')),
    ingested_at      timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (fill_id, ts)
);
CREATE INDEX fills_order_idx ON fills (order_id);
CREATE INDEX fills_configuration_idx ON fills (configuration_id, ts DESC);
CREATE INDEX fills_account_idx ON fills (account_id, ts DESC);

-- A closed round trip. pnl is net of fees; exit_ts is its time column (performance is counted when a trade closes).
CREATE TABLE trades (
    trade_id         text             NOT NULL,
    configuration_id text             NOT NULL REFERENCES trained_configurations (id),
    account_id       text             NOT NULL,
    exchange         text             NOT NULL,
    symbol           text             NOT NULL,
    side             text             NOT NULL,
    quantity         double precision NOT NULL CHECK (quantity > 0),
    entry_ts         timestamptz      NOT NULL,
    entry_price      double precision NOT NULL,
    exit_ts          timestamptz      NOT NULL,
    exit_price       double precision NOT NULL,
    pnl              double precision NOT NULL,
    fees             double precision NOT NULL DEFAULT 0,
    exit_reason      text             NOT NULL DEFAULT '',
    entry_order_id   text,
    exit_order_id    text,
    mode             text             NOT NULL DEFAULT 'paper' CHECK (mode IN ('paper', 'live')),
    ingested_at      timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (trade_id, exit_ts),
    CHECK (exit_ts >= entry_ts)
);
CREATE INDEX trades_configuration_idx ON trades (configuration_id, exit_ts DESC);
CREATE INDEX trades_account_idx ON trades (account_id, exit_ts DESC);

-- Open positions, one row per account, configuration and instrument; quantity is signed (negative = short).
CREATE TABLE positions (
    account_id       text             NOT NULL,
    configuration_id text             NOT NULL REFERENCES trained_configurations (id),
    exchange         text             NOT NULL,
    symbol           text             NOT NULL,
    quantity         double precision NOT NULL,
    avg_entry_price  double precision NOT NULL,
    realized_pnl     double precision NOT NULL DEFAULT 0,
    stop_loss        double precision,
    take_profit      double precision,
    opened_at        timestamptz      NOT NULL,
    updated_at       timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, configuration_id, exchange, symbol)
);
CREATE INDEX positions_configuration_idx ON positions (configuration_id);
CREATE TRIGGER positions_touch BEFORE UPDATE ON positions FOR EACH ROW EXECUTE FUNCTION touch_updated_at();

CREATE TABLE portfolio_history (
    snapshot_id      text             NOT NULL,
    ts               timestamptz      NOT NULL,
    account_id       text             NOT NULL,
    configuration_id text             REFERENCES trained_configurations (id),
    cash             double precision NOT NULL,
    equity           double precision NOT NULL,
    realized_pnl     double precision NOT NULL DEFAULT 0,
    unrealized_pnl   double precision NOT NULL DEFAULT 0,
    positions        jsonb            NOT NULL DEFAULT '{}',
    ingested_at      timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (snapshot_id, ts)
);
CREATE INDEX portfolio_history_account_idx ON portfolio_history (account_id, ts DESC);
CREATE INDEX portfolio_history_configuration_idx ON portfolio_history (configuration_id, ts DESC);

-- Structured operational logs. No foreign key on configuration_id: a log line is never refused.
CREATE TABLE trade_logs (
    log_id           text        NOT NULL,
    ts               timestamptz NOT NULL,
    level            text        NOT NULL,
    message          text        NOT NULL,
    logger           text        NOT NULL DEFAULT '',
    configuration_id text,
    trade_id         text,
    metadata         jsonb       NOT NULL DEFAULT '{}',
    ingested_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (log_id, ts)
);
CREATE INDEX trade_logs_configuration_idx ON trade_logs (configuration_id, ts DESC);
CREATE INDEX trade_logs_trade_idx ON trade_logs (trade_id) WHERE trade_id IS NOT NULL;

-- ------------------------------------------------------------------------------------------------ operations

-- Each worker upserts its row every few seconds; /health calls a worker alive while last_seen is recent.
CREATE TABLE worker_heartbeats (
    worker_id  text        PRIMARY KEY,
    host       text        NOT NULL,
    pid        integer     NOT NULL,
    started_at timestamptz NOT NULL,
    last_seen  timestamptz NOT NULL DEFAULT now(),
    stats      jsonb       NOT NULL DEFAULT '{}'
);

-- Filled from ops.dlq: rejected input kept whole with its reason and where it came from.
CREATE TABLE dead_letters (
    event_id     text        PRIMARY KEY,
    ts           timestamptz NOT NULL,
    source_topic text        NOT NULL,
    "partition"  integer     NOT NULL,
    "offset"     bigint      NOT NULL,
    key          text,
    reason       text        NOT NULL,
    payload      text        NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dead_letters_topic_idx ON dead_letters (source_topic, ts DESC);
