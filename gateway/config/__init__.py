"""Configuration: the strict schema of the config file, its field types and the loader (``${ENV}``, error paths)."""
