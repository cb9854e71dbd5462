"""Accounting: stores one row per finished request from the JetStream usage stream into Postgres."""
