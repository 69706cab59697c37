-- Time-series storage without TimescaleDB: the time indexes create_hypertable makes in the timescale variant.
-- There is no compression or retention here; plain tables keep everything.

CREATE INDEX market_data_ts_idx ON market_data (ts DESC);
CREATE INDEX fills_ts_idx ON fills (ts DESC);
CREATE INDEX trades_exit_ts_idx ON trades (exit_ts DESC);
CREATE INDEX portfolio_history_ts_idx ON portfolio_history (ts DESC);
CREATE INDEX trade_logs_ts_idx ON trade_logs (ts DESC);
