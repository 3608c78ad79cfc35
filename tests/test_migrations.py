"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL, and
there is one line of them (one head)."""

from __future__ import annotations

import warnings
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

import services.bulk.models  # noqa: F401  (its tables belong to the same metadata)
from services.db import Database, alembic_config
from services.models import Base

# Tables that the code reaches with SQL of its own, without a model.
WITHOUT_MODEL = {"graph_write_pacing"}


def test_the_migrations_have_one_head() -> None:
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    assert len(heads) == 1, f"merge the migration heads {heads} into one"


async def test_the_migrated_schema_is_the_models_schema(database: Database) -> None:
    def differences(connection: Any) -> list[Any]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        with warnings.catch_warnings():
            # SQLite cannot reflect an expression index (users by lower(display_name)).
            warnings.simplefilter("ignore")
            return list(compare_metadata(context, Base.metadata))

    async with database.write_engine.connect() as connection:
        found = await connection.run_sync(differences)
    unexpected = [d for d in found if not (d[0] == "remove_table" and d[1].name in WITHOUT_MODEL)]
    assert unexpected == []
