"""Routers of the web UI; each area of the product adds its own module here."""

from fastapi import APIRouter

from kopilka.web.routes import (
    auth,
    card_imports,
    cards,
    cash_registers,
    certificates,
    farcards_settings,
    front_desk,
    front_desk_folio,
    front_desk_settings,
    home,
    jobs,
    ledger,
    loyalty_centre,
    loyalty_settings,
    payment_types,
    reports,
    settings,
)

ROUTERS: list[APIRouter] = [
    auth.router,
    home.router,
    ledger.router,
    jobs.router,
    settings.router,
    loyalty_settings.router,
    payment_types.router,
    cash_registers.router,
    loyalty_centre.router,
    farcards_settings.router,
    cards.router,
    certificates.router,
    front_desk.router,
    front_desk_folio.router,
    front_desk_settings.router,
    card_imports.router,
    reports.router,
]
