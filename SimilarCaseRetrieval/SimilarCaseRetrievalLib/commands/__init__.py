"""Subcommands of `similar-cases`; see `cli.SUBCOMMANDS`."""
