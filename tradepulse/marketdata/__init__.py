"""Market data in: CSV import, synthetic data, exchange backfill, and the live and replay tick feeds."""
