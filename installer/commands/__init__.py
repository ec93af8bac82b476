"""Command groups of the `sfp-server` CLI that live outside cli.py."""
