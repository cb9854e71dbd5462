"""The admin API's back end: keys and teams in Postgres, answered over NATS (``subjects.ADMIN``), and
the key-value bucket of their records that every gateway watches (``subjects.KEYS_BUCKET``)."""
