"""Tenants, branches, staff users and roles, terminal keys, and the audit trail."""
