-- Rollups without TimescaleDB: the same relation names and columns as the continuous aggregates of the timescale
-- variant, as plain views computed at query time (always current, nothing to refresh). date_bin with the Unix
-- epoch as origin gives the same buckets as time_bucket there.

CREATE VIEW market_candles_5m AS
SELECT exchange,
       symbol,
       date_bin(INTERVAL '5 minutes', ts, TIMESTAMPTZ '1970-01-01 00:00:00+00') AS ts,
       (array_agg(open ORDER BY ts))[1]       AS open,
       max(high)                              AS high,
       min(low)                               AS low,
       (array_agg(close ORDER BY ts DESC))[1] AS close,
       sum(volume)                            AS volume,
       sum(trades)                            AS trades,
       count(*)                               AS candles
FROM market_data
WHERE timeframe = '1m'
GROUP BY 1, 2, 3;

CREATE VIEW market_candles_15m AS
SELECT exchange,
       symbol,
       date_bin(INTERVAL '15 minutes', ts, TIMESTAMPTZ '1970-01-01 00:00:00+00') AS ts,
       (array_agg(open ORDER BY ts))[1]       AS open,
       max(high)                              AS high,
       min(low)                               AS low,
       (array_agg(close ORDER BY ts DESC))[1] AS close,
       sum(volume)                            AS volume,
       sum(trades)                            AS trades,
       count(*)                               AS candles
FROM market_data
WHERE timeframe = '1m'
GROUP BY 1, 2, 3;

CREATE VIEW market_candles_1h AS
SELECT exchange,
       symbol,
       date_bin(INTERVAL '1 hour', ts, TIMESTAMPTZ '1970-01-01 00:00:00+00') AS ts,
       (array_agg(open ORDER BY ts))[1]       AS open,
       max(high)                              AS high,
       min(low)                               AS low,
       (array_agg(close ORDER BY ts DESC))[1] AS close,
       sum(volume)                            AS volume,
       sum(trades)                            AS trades,
       count(*)                               AS candles
FROM market_data
WHERE timeframe = '1m'
GROUP BY 1, 2, 3;

CREATE VIEW market_candles_4h AS
SELECT exchange,
       symbol,
       date_bin(INTERVAL '4 hours', ts, TIMESTAMPTZ '1970-01-01 00:00:00+00') AS ts,
       (array_agg(open ORDER BY ts))[1]       AS open,
       max(high)                              AS high,
       min(low)                               AS low,
       (array_agg(close ORDER BY ts DESC))[1] AS close,
       sum(volume)                            AS volume,
       sum(trades)                            AS trades,
       count(*)                               AS candles
FROM market_data
WHERE timeframe = '1m'
GROUP BY 1, 2, 3;

CREATE VIEW market_candles_1d AS
SELECT exchange,
       symbol,
       date_bin(INTERVAL '1 day', ts, TIMESTAMPTZ '1970-01-01 00:00:00+00') AS ts,
       (array_agg(open ORDER BY ts))[1]       AS open,
       max(high)                              AS high,
       min(low)                               AS low,
       (array_agg(close ORDER BY ts DESC))[1] AS close,
       sum(volume)                            AS volume,
       sum(trades)                            AS trades,
       count(*)                               AS candles
FROM market_data
WHERE timeframe = '1m'
GROUP BY 1, 2, 3;

CREATE VIEW strategy_performance_hourly AS
SELECT configuration_id,
       date_bin(INTERVAL '1 hour', exit_ts, TIMESTAMPTZ '1970-01-01 00:00:00+00') AS ts,
       count(*)                                                         AS trade_count,
       count(*) FILTER (WHERE pnl > 0)                                  AS wins,
       count(*) FILTER (WHERE pnl > 0)::double precision / count(*)     AS win_rate,
       sum(pnl)                                                         AS total_pnl,
       avg(pnl)                                                         AS avg_pnl,
       sum(fees)                                                        AS total_fees
FROM trades
GROUP BY 1, 2;

CREATE VIEW strategy_performance_daily AS
SELECT configuration_id,
       date_bin(INTERVAL '1 day', exit_ts, TIMESTAMPTZ '1970-01-01 00:00:00+00') AS ts,
       count(*)                                                         AS trade_count,
       count(*) FILTER (WHERE pnl > 0)                                  AS wins,
       count(*) FILTER (WHERE pnl > 0)::double precision / count(*)     AS win_rate,
       sum(pnl)                                                         AS total_pnl,
       avg(pnl)                                                         AS avg_pnl,
       sum(fees)                                                        AS total_fees
FROM trades
GROUP BY 1, 2;
