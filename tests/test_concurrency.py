"""Never twice: concurrent allocations from one inventory on PostgreSQL and SQLite."""

from __future__ import annotations

import asyncio

import pytest

from services.container import Services
from services.domain import LicenceProduct
from services.errors import NoFreeNumberError
from services.inventory import AUTO
from services.users import NewUser, UserChanges
from tests.conftest import admin_of, seed_enterprise


async def _assign_concurrently(services: Services, users: int, numbers: int) -> list[object]:
    ent = await seed_enterprise(
        services,
        numbers=("+442079460000", f"+44207946{numbers - 1:04d}"),
        extensions=(1000, 1000 + users + 10),
        essentials=users + 10,
    )
    admin = admin_of(ent)
    people = [
        await services.users.create(admin, ent, NewUser(f"User {i}", f"u{i}@contoso.com"))
        for i in range(users)
    ]

    async def give(person_id: int, version: int) -> object:
        try:
            view = await services.users.update(
                admin, ent, person_id, version, UserChanges(number=AUTO)
            )
        except NoFreeNumberError as error:
            return error
        return view.number

    return await asyncio.gather(*(give(p.id, p.version) for p in people))


@pytest.mark.parametrize(
    "database", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_200_concurrent_auto_assignments_on_postgres(services: Services) -> None:
    results = await _assign_concurrently(services, users=200, numbers=200)
    numbers = [r for r in results if isinstance(r, str)]
    assert len(numbers) == 200 and len(set(numbers)) == 200
    assert not [r for r in results if not isinstance(r, str)]


@pytest.mark.parametrize(
    "database", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
async def test_running_out_only_says_no_free_number(services: Services) -> None:
    results = await _assign_concurrently(services, users=60, numbers=50)
    numbers = [r for r in results if isinstance(r, str)]
    refusals = [r for r in results if not isinstance(r, str)]
    assert len(numbers) == 50 and len(set(numbers)) == 50
    assert len(refusals) == 10 and all(isinstance(r, NoFreeNumberError) for r in refusals)


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
async def test_concurrent_creates_on_sqlite_never_share_a_number(services: Services) -> None:
    ent = await seed_enterprise(services, numbers=("+442079460000", "+442079460039"), essentials=50)
    admin = admin_of(ent)

    async def create(i: int) -> object:
        try:
            view = await services.users.create(
                admin, ent, NewUser(f"U{i}", f"u{i}@contoso.com", LicenceProduct.ESSENTIALS)
            )
        except NoFreeNumberError as error:
            return error
        return (view.number, view.extension)

    results = await asyncio.gather(*(create(i) for i in range(45)))
    given = [r for r in results if isinstance(r, tuple)]
    assert len(given) == 40
    assert len({n for n, _ in given}) == 40 and len({e for _, e in given}) == 40
    assert sum(isinstance(r, NoFreeNumberError) for r in results) == 5
