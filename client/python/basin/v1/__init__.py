"""Stubs generated from proto/basin/v1 at build time (see gen_stubs.py)."""
