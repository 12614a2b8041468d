"""Kopilka: a self-hosted billing and loyalty server on one double-entry ledger."""

__version__ = "0.1.0"
