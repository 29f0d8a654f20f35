"""Check kinds: one module per kind, registered in `registry`."""
