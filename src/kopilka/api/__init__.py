"""The HTTP API: FastAPI app, dependencies, error mapping, one router per area.

Doors stay thin: a route validates its input, calls an action in one transaction and
shapes the reply. See ``kopilka.api.app.create_app``.
"""
