"""Fiscal receipts: cash registers and their adapters (SPEC H-6)."""
