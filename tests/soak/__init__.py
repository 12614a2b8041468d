"""Long fault-injection runs against the real server on PostgreSQL (issue 9), started by hand:

    .venv/bin/python -m tests.soak.crash --kills 25       # SIGKILL the server under load
    .venv/bin/python -m tests.soak.db_restart --restarts 4  # restart PostgreSQL under load

Each prints a table of its figures and exits 1 when a rule is broken. Short versions of
both run in the suite (``tests/concurrency``). No file here is named ``test_*``, so pytest
never collects these runs.
"""
