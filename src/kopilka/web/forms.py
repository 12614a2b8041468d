"""Forms of the web UI (WTForms): each field's error is shown next to it, translated.

WTForms' own messages (a required field, a too-long value) come in the request's locale
from its bundled catalogues; messages of our own are passed through ``_`` where they are
raised. CSRF is checked for every unsafe request in ``kopilka.web.deps``, so forms here
only carry the token.
"""

from __future__ import annotations

from wtforms import Form

from kopilka.core.errors import KopilkaError
from kopilka.web import i18n


class WebForm(Form):
    class Meta:
        @property
        def locales(self) -> list[str]:
            return [i18n.current_locale()]

        cache_translations = True

    def add_error(self, field: str, message: str) -> None:
        """A refusal found after validation (by the domain) shown by its field."""
        target = getattr(self, field, None)
        if target is None:
            self.form_errors.append(message)
        else:
            target.errors = [*target.errors, message]

    def refuse(self, error: KopilkaError, fields: dict[str, tuple[str, str]]) -> None:
        """Map a domain error code to (field, translated message); others go on top."""
        field, message = fields.get(error.code, ("", error.detail))
        self.add_error(field, message)

    @property
    def has_errors(self) -> bool:
        return bool(self.form_errors) or any(f.errors for f in self)
