"""One module per CLI command; each exposes ``register(subparsers)`` and stays a thin layer."""
