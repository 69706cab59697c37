-- Time-series storage on TimescaleDB: hypertables, compression and retention.
--
-- market_data, fills, trades and portfolio_history become hypertables (and trade_logs, so old logs can expire by
-- dropping whole chunks). Their primary keys already include the time column (see 0001), as hypertables require.
-- Compression segments by the columns queries filter on, so a compressed chunk is still read per instrument or
-- per configuration; upserts into compressed chunks keep working. Retention only drops what is disposable:
-- market data, fills and trades are the training set and the audit trail and are kept.
-- The plain variant creates the time indexes that create_hypertable makes here, and no policies.

CREATE EXTENSION IF NOT EXISTS timescaledb;

SELECT create_hypertable('market_data', by_range('ts', INTERVAL '7 days'));
SELECT create_hypertable('fills', by_range('ts', INTERVAL '30 days'));
SELECT create_hypertable('trades', by_range('exit_ts', INTERVAL '30 days'));
SELECT create_hypertable('portfolio_history', by_range('ts', INTERVAL '7 days'));
SELECT create_hypertable('trade_logs', by_range('ts', INTERVAL '1 day'));

ALTER TABLE market_data SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'exchange, symbol, timeframe',
    timescaledb.compress_orderby = 'ts DESC'
);
ALTER TABLE fills SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'configuration_id',
    timescaledb.compress_orderby = 'ts DESC, fill_id'
);
ALTER TABLE trades SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'configuration_id',
    timescaledb.compress_orderby = 'exit_ts DESC, trade_id'
);
ALTER TABLE portfolio_history SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'account_id',
    timescaledb.compress_orderby = 'ts DESC, snapshot_id'
);
ALTER TABLE trade_logs SET (
    timescaledb.compress,
    timescaledb.compress_orderby = 'ts DESC, log_id'
);

SELECT add_compression_policy('market_data', INTERVAL '30 days');
SELECT add_compression_policy('fills', INTERVAL '90 days');
SELECT add_compression_policy('trades', INTERVAL '90 days');
SELECT add_compression_policy('portfolio_history', INTERVAL '30 days');
SELECT add_compression_policy('trade_logs', INTERVAL '7 days');

SELECT add_retention_policy('portfolio_history', INTERVAL '730 days');
SELECT add_retention_policy('trade_logs', INTERVAL '90 days');
