"""How a tenant is paid: the payment types directory (SPEC H-3) and the codes terminals
send for them (SPEC P-8). Folio payments (H-2), paying with points (H-4) and room charge
(P-7) name these types; see ``types`` and ``codes``."""
