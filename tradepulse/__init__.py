"""TradePulse: crypto trading as stream processing over a Kafka log with TimescaleDB views."""

__version__ = "0.1.0"
