"""The relay engine: fulfils every operation through upstream channels (the official API or
reseller relays), with routing, failover, cooldowns and re-hosting of every result image."""
