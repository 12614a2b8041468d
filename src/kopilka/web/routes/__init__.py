"""Routers of the web UI; each area of the product adds its own module here."""

from fastapi import APIRouter

from kopilka.web.routes import auth, home, jobs, ledger, settings

ROUTERS: list[APIRouter] = [auth.router, home.router, ledger.router, jobs.router, settings.router]
