"""Finding subscribers: by account number, any part of the name whatever the case (in
Cyrillic too, on SQLite as on PostgreSQL), or four digits of the phone."""

from __future__ import annotations

from kopilka.subscribers.registry import list_subscribers
from tests.subscribers.conftest import Isp


def test_search_by_name_phone_and_number(isp: Isp) -> None:
    tariff = isp.tariff()
    sidorov = isp.subscriber(
        tariff, account_no="a-100", full_name="Сидоров Пётр", phone="+7 916 555-12-34"
    )
    isp.subscriber(tariff, account_no="A-101", full_name="100% Иванов_")

    def found(text: str) -> list[str]:
        return [s.account_no for s in isp.read(lambda c: list_subscribers(c, isp.t, search=text))]

    assert found("сидоров") == ["A-100"]
    assert found("ПЁТР") == ["A-100"]
    assert found("a-100") == ["A-100"]
    assert found("5551234") == ["A-100"]
    assert found("100%") == ["A-101"]  # the sign is a letter here, not a wildcard
    assert found("%") == ["A-101"]
    assert found("_") == ["A-101"]
    assert found("Смирнов") == []
    assert isp.get(sidorov).full_name == "Сидоров Пётр"
