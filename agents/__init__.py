"""TradePulse agents."""
