from django.core.checks import Error, Tags, register
from django.db import connections

# NULLS NOT DISTINCT unique constraints (PostgreSQL 15): the squash upserts counts keyed by a provider that
# may be empty.
MIN_POSTGRESQL = 150000


@register(Tags.database)
def postgresql_version(app_configs, databases=None, **kwargs):
    problems = []
    for alias in databases or []:
        connection = connections[alias]
        if connection.vendor == "postgresql" and connection.pg_version < MIN_POSTGRESQL:
            problems.append(Error(
                f"The analytics counts need PostgreSQL 15 or later; database {alias!r} runs "
                f"{connection.pg_version // 10000}.", id="analytics.E001",
                hint="Upgrade PostgreSQL (docker-compose.yml's image is new enough)."))
    return problems
