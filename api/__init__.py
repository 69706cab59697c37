"""TradePulse api."""
