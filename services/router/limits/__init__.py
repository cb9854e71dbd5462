"""Keys' and teams' limits and budgets, decided in the router's Route in the same atomic Redis step
as the deployment's limits (``admission``), reservations ended by the gateway's settlements, and
budget counters rebuilt from the usage ledger when Redis has lost them (``ledger``)."""
