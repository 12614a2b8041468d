"""Stable codes of the outgoing e-mail's refusals.

=====================  ============  ==================================================
code                   class         when
=====================  ============  ==================================================
invalid_mail_address   InvalidInput  the recipient is not one plain e-mail address
                                     (the rules of a card holder's e-mail, and none of
                                     ``, ; < > ( ) [ ] : \\ "`` nor control characters)
invalid_mail_subject   InvalidInput  a subject that is empty, longer than 200
                                     characters, or holds a line break or another
                                     control character (a header cannot be injected)
invalid_mail           InvalidInput  another field out of its rules (``field`` names
                                     it: kind, ref, body_text, body_html)
mail_not_found         NotFound      no such message in the tenant
mail_not_retryable     Refused       "send again" for a message that is not failed
=====================  ============  ==================================================

An SMTP server that refuses or never answers is not an error of any request: the message
stays in the outbox with its ``last_error``, tried again or marked failed.
"""

from __future__ import annotations

from enum import StrEnum


class MailErrorCode(StrEnum):
    INVALID_MAIL_ADDRESS = "invalid_mail_address"
    INVALID_MAIL_SUBJECT = "invalid_mail_subject"
    INVALID_MAIL = "invalid_mail"
    MAIL_NOT_FOUND = "mail_not_found"
    MAIL_NOT_RETRYABLE = "mail_not_retryable"
