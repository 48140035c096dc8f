"""The `surveillance` commands, one module per area; `surveillance/cli.py` registers them.

`common` holds what every command shares: the one-line `fail`, the settings loader, the
pseudonym-key and broker checks.
"""
