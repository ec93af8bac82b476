"""sfp-server: install and run self-hosted Supabase, one isolated instance per organization."""

__version__ = "0.1.0"
