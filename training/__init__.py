"""TradePulse training."""
