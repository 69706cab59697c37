-- tradepulse: no-transaction
--
-- Rollups on TimescaleDB, as continuous aggregates: candles of 5m .. 1d from the 1m rows of market_data, and
-- per-configuration performance by hour and day from closed trades (trades.exit_ts).
--
-- Continuous aggregates cannot be created inside a transaction, so this file runs statement by statement in
-- autocommit, and every statement is safe to re-run. They are created WITH NO DATA (no long refresh inside the
-- migration) and real-time (materialized_only = false): a query adds the not yet materialized rows from the source,
-- so results are current before the first refresh, as with the plain variant's views. The refresh policies start
-- at the beginning of time (start_offset NULL) so candles backfilled into the past are rolled up too; a refresh
-- only recomputes buckets whose rows changed. Buckets align to the Unix epoch (time_bucket's default origin,
-- 2000-01-03, is a whole number of days and of 4-hour periods after it), like streams.records.TIMEFRAMES.
-- Columns and types match the plain variant exactly.

CREATE MATERIALIZED VIEW IF NOT EXISTS market_candles_5m
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT exchange,
       symbol,
       time_bucket(INTERVAL '5 minutes', ts) AS ts,
       first(open, ts)    AS open,
       max(high)          AS high,
       min(low)           AS low,
       last(close, ts)    AS close,
       sum(volume)        AS volume,
       sum(trades)        AS trades,
       count(*)           AS candles
FROM market_data
WHERE timeframe = '1m'
GROUP BY exchange, symbol, time_bucket(INTERVAL '5 minutes', ts)
WITH NO DATA;

SELECT add_continuous_aggregate_policy('market_candles_5m',
    start_offset => NULL, end_offset => INTERVAL '5 minutes', schedule_interval => INTERVAL '5 minutes',
    if_not_exists => true);

CREATE MATERIALIZED VIEW IF NOT EXISTS market_candles_15m
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT exchange,
       symbol,
       time_bucket(INTERVAL '15 minutes', ts) AS ts,
       first(open, ts)    AS open,
       max(high)          AS high,
       min(low)           AS low,
       last(close, ts)    AS close,
       sum(volume)        AS volume,
       sum(trades)        AS trades,
       count(*)           AS candles
FROM market_data
WHERE timeframe = '1m'
GROUP BY exchange, symbol, time_bucket(INTERVAL '15 minutes', ts)
WITH NO DATA;

SELECT add_continuous_aggregate_policy('market_candles_15m',
    start_offset => NULL, end_offset => INTERVAL '15 minutes', schedule_interval => INTERVAL '15 minutes',
    if_not_exists => true);

CREATE MATERIALIZED VIEW IF NOT EXISTS market_candles_1h
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT exchange,
       symbol,
       time_bucket(INTERVAL '1 hour', ts) AS ts,
       first(open, ts)    AS open,
       max(high)          AS high,
       min(low)           AS low,
       last(close, ts)    AS close,
       sum(volume)        AS volume,
       sum(trades)        AS trades,
       count(*)           AS candles
FROM market_data
WHERE timeframe = '1m'
GROUP BY exchange, symbol, time_bucket(INTERVAL '1 hour', ts)
WITH NO DATA;

SELECT add_continuous_aggregate_policy('market_candles_1h',
    start_offset => NULL, end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '15 minutes',
    if_not_exists => true);

CREATE MATERIALIZED VIEW IF NOT EXISTS market_candles_4h
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT exchange,
       symbol,
       time_bucket(INTERVAL '4 hours', ts) AS ts,
       first(open, ts)    AS open,
       max(high)          AS high,
       min(low)           AS low,
       last(close, ts)    AS close,
       sum(volume)        AS volume,
       sum(trades)        AS trades,
       count(*)           AS candles
FROM market_data
WHERE timeframe = '1m'
GROUP BY exchange, symbol, time_bucket(INTERVAL '4 hours', ts)
WITH NO DATA;

SELECT add_continuous_aggregate_policy('market_candles_4h',
    start_offset => NULL, end_offset => INTERVAL '4 hours', schedule_interval => INTERVAL '30 minutes',
    if_not_exists => true);

CREATE MATERIALIZED VIEW IF NOT EXISTS market_candles_1d
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT exchange,
       symbol,
       time_bucket(INTERVAL '1 day', ts) AS ts,
       first(open, ts)    AS open,
       max(high)          AS high,
       min(low)           AS low,
       last(close, ts)    AS close,
       sum(volume)        AS volume,
       sum(trades)        AS trades,
       count(*)           AS candles
FROM market_data
WHERE timeframe = '1m'
GROUP BY exchange, symbol, time_bucket(INTERVAL '1 day', ts)
WITH NO DATA;

SELECT add_continuous_aggregate_policy('market_candles_1d',
    start_offset => NULL, end_offset => INTERVAL '1 day', schedule_interval => INTERVAL '1 hour',
    if_not_exists => true);

CREATE MATERIALIZED VIEW IF NOT EXISTS strategy_performance_hourly
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT configuration_id,
       time_bucket(INTERVAL '1 hour', exit_ts) AS ts,
       count(*)                                                         AS trade_count,
       count(*) FILTER (WHERE pnl > 0)                                  AS wins,
       count(*) FILTER (WHERE pnl > 0)::double precision / count(*)     AS win_rate,
       sum(pnl)                                                         AS total_pnl,
       avg(pnl)                                                         AS avg_pnl,
       sum(fees)                                                        AS total_fees
FROM trades
GROUP BY configuration_id, time_bucket(INTERVAL '1 hour', exit_ts)
WITH NO DATA;

SELECT add_continuous_aggregate_policy('strategy_performance_hourly',
    start_offset => NULL, end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '15 minutes',
    if_not_exists => true);

CREATE MATERIALIZED VIEW IF NOT EXISTS strategy_performance_daily
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT configuration_id,
       time_bucket(INTERVAL '1 day', exit_ts) AS ts,
       count(*)                                                         AS trade_count,
       count(*) FILTER (WHERE pnl > 0)                                  AS wins,
       count(*) FILTER (WHERE pnl > 0)::double precision / count(*)     AS win_rate,
       sum(pnl)                                                         AS total_pnl,
       avg(pnl)                                                         AS avg_pnl,
       sum(fees)                                                        AS total_fees
FROM trades
GROUP BY configuration_id, time_bucket(INTERVAL '1 day', exit_ts)
WITH NO DATA;

SELECT add_continuous_aggregate_policy('strategy_performance_daily',
    start_offset => NULL, end_offset => INTERVAL '1 day', schedule_interval => INTERVAL '1 hour',
    if_not_exists => true);
