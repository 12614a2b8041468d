"""Hotel folios: properties, rooms, guests, stays, invoices, payments (SPEC H-1 … H-5, P-7)."""
