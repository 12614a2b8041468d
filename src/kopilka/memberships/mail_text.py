"""The confirmation e-mail of a membership sold online, in the client's language (the
language of the checkout page they bought on): Russian or English."""

from __future__ import annotations

from html import escape

_TEXT = {
    "ru": {
        "subject": "{studio}: абонемент {number}",
        "hello": "Здравствуйте!",
        "bought": "Вы купили абонемент «{type_name}» в {studio}.",
        "number": "Номер абонемента: {number}",
        "code": "Код активации: {code}",
        "paid": "Оплачено: {paid} {currency}",
        "classes": "Занятий: {classes}",
        "unlimited": "Занятий: без ограничений",
        "validity": "Срок действия: {days} дн. с момента активации",
        "how": "Чтобы активировать абонемент, назовите код активации администратору студии.",
    },
    "en": {
        "subject": "{studio}: membership {number}",
        "hello": "Hello,",
        "bought": "You have bought the membership “{type_name}” at {studio}.",
        "number": "Membership number: {number}",
        "code": "Activation code: {code}",
        "paid": "Paid: {paid} {currency}",
        "classes": "Classes: {classes}",
        "unlimited": "Classes: unlimited",
        "validity": "Valid for {days} days from activation",
        "how": "To activate it, tell the activation code to the studio's staff.",
    },
}


def sold_mail(
    *,
    locale: str,
    studio: str,
    type_name: str,
    number: str,
    code: str,
    paid: str,
    currency: str,
    classes: int | None,
    validity_days: int,
) -> tuple[str, str, str]:
    """The subject, the text and the HTML of the e-mail."""
    t = _TEXT.get(locale, _TEXT["ru"])
    values = {
        "studio": studio,
        "type_name": type_name,
        "number": number,
        "code": code,
        "paid": paid,
        "currency": currency,
        "classes": classes,
        "days": validity_days,
    }
    lines = [
        t["hello"],
        "",
        t["bought"].format(**values),
        "",
        t["number"].format(**values),
        t["code"].format(**values),
        t["paid"].format(**values),
        (t["classes"] if classes else t["unlimited"]).format(**values),
        t["validity"].format(**values),
        "",
        t["how"],
    ]
    subject = " ".join(t["subject"].format(**values).split())[:200]
    text = "\n".join(lines) + "\n"
    html = "".join(f"<p>{escape(line)}</p>" if line else "" for line in lines)
    html = html.replace(
        f"<p>{escape(t['code'].format(**values))}</p>",
        f"<p><strong>{escape(t['code'].format(**values))}</strong></p>",
    )
    return subject, text, f"<!doctype html><html><body>{html}</body></html>"
