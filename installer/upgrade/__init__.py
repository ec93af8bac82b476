"""Upgrades of an org's stack from one catalog release to a newer one: the plan, and the decisions
the upgrade takes from it (which services restart, whether a rollback must restore data)."""
