"""The gate between parsing and engines: per-key rate limits (billing lives in store.ledger)."""
