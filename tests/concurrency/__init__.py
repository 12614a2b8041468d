"""Many clients at once and faults under load, against the real server on PostgreSQL
(issue 9): short versions of the soak runs in ``tests/soak``, and contention."""
