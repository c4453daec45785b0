"""State backends (embedded SQLite + memory, Redis) behind one small interface, the
write-behind spend ledger, and the bounded (LRU) caches the request path keeps."""
