"""Accounting's analytics: the partitioned ledger's upkeep, the rollups written with each batch, and the
analytics API's queries, answered over NATS."""
