"""``make demo`` (placeholder until the phantom lands)."""
