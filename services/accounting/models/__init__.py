"""Accounting's tables, one module per concern; importing this package registers them all on
``SQLModel.metadata`` (what Alembic and the migration test compare against).

The schema itself is created by the Alembic migrations (``alembic/versions``); these models are
what the code reads and writes, and a test checks that the two agree.
"""

from accounting.models.analytics import UsageBody, UsageDaily, UsageDailyTotal
from accounting.models.keys import ApiKey, Team
from accounting.models.usage import STATUSES, UsageRecord

__all__ = ["STATUSES", "ApiKey", "Team", "UsageBody", "UsageDaily", "UsageDailyTotal", "UsageRecord"]
