"""The double-entry ledger: accounts, transfers, holds, lots, balances, invariants."""
