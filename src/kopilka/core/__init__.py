"""Shared foundations: settings, database, money and units, clock, errors."""
