"""Crash safety, short (issue 9a; the long run is ``python -m tests.soak.crash``): the
server SIGKILLed and restarted four times under a POS load with retries loses no
acknowledged check or refund, writes none twice and leaves nothing half-written."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine

from tests.soak import crash
from tests.soak.common import print_table

pytestmark = pytest.mark.pg_only


def test_sigkill_under_load_loses_and_duplicates_nothing(pg_engine: Engine, tmp_path: Path) -> None:
    result = crash.run(
        pg_engine.url.render_as_string(hide_password=False),
        kills=4,
        clients=4,
        cards=3,
        min_gap=0.5,
        max_gap=2.0,
        give_up=60.0,
        log_dir=tmp_path,
    )
    print_table("crash safety (smoke)", result.rows())
    assert result.kills == 4
    assert result.audit.acked > 0 and result.audit.retries > 0
    assert result.ok, [*result.rows(), *result.audit.problems]
