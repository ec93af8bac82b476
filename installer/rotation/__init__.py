"""Rotation of an org's secrets: which vault names each group covers, who must be told, and the
plan of one rotation (what changes, what restarts), built from what the rotate role reported."""
