"""The command line: one module per command group (serve, keys, models, users, report, secrets)."""
