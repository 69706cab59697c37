"""FastAPI over the store's views: health, market data; the dashboard later builds on these routers."""
