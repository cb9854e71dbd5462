"""The admin API (keys and teams), for the master key: routes here, answers from accounting, which owns
Postgres (``gateway.admin.accounting_link``); the gateway opens no database connection."""
