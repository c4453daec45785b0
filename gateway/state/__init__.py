"""State backends (embedded SQLite + memory, Redis) behind one small interface, and the write-behind spend ledger."""
