"""Who is acting: every change in Kopilka is recorded with one of these."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ActorType(StrEnum):
    USER = "user"
    TERMINAL = "terminal"
    JOB = "job"
    CLI = "cli"
    SUBSCRIBER = "subscriber"  # a subscriber in the self-service cabinet


@dataclass(frozen=True, slots=True)
class Actor:
    type: ActorType
    id: str | None = None
    label: str = ""
    source_ip: str | None = None

    @classmethod
    def job(cls, name: str) -> Actor:
        return cls(ActorType.JOB, None, name)

    @classmethod
    def cli(cls, label: str = "kopilka") -> Actor:
        return cls(ActorType.CLI, None, label)
