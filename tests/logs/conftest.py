"""Fixtures of tests/logs live in sfp_logs_stack.py (importable by the test modules)."""

from sfp_logs_stack import stack, utc_env

__all__ = ["stack", "utc_env"]
