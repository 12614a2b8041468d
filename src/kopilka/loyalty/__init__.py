"""Discount cards, bonus programs and the POS gateway (SPEC C, P)."""
