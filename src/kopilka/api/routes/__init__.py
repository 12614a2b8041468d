"""One router per area; ``kopilka.api.app`` mounts them.

The JSON API lives under ``API_PREFIX``. Each router carries the full prefix itself, so
a route's ``path`` is its whole URL template (that is the label metrics and logs use).
"""

API_PREFIX = "/api/v1"
