"""TradePulse deploy."""
