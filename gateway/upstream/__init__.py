"""The HTTP client seam to upstreams: one pooled client, transport errors mapped once."""
