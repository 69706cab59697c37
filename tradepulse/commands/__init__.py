"""Subcommands of the `tradepulse` CLI, one module each."""
