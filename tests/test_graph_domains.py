"""E-mail addresses are checked against the tenant's verified domains when the admin submits
the form (GET /domains, cached per tenant, read again on a miss), so a gmail address uses up
no licence, number or extension and never reaches Microsoft."""

from __future__ import annotations

import pytest

from sandbox import SandboxServer
from services.container import Services
from services.domain import LicenceProduct
from services.errors import ValidationError
from services.graph import VerifiedDomains
from services.inventory import AUTO
from services.users import NewUser, UserChanges
from tests.conftest import PROVIDER
from tests.provisioning_kit import (
    CLIENT_ID,
    SQLITE_ONLY,
    cloud_fixture,  # noqa: F401
    composed,
    global_admin,
    graph_service,
    graph_settings,
    make_enterprise,
    sandbox_server_fixture,  # noqa: F401
    seed_tenant,
)


def _new(email: str) -> NewUser:
    return NewUser(
        display_name="Gina Gmail",
        email=email,
        licence=LicenceProduct.ESSENTIALS,
        number=AUTO,
        extension=AUTO,
    )


@SQLITE_ONLY
async def test_an_address_outside_the_verified_domains_is_refused_at_the_form(
    services: Services, cloud: SandboxServer
) -> None:
    tid = seed_tenant(cloud, 91)
    cloud.state.add_tenant(tid, domains=["sales.enterprise91.example"])
    ent = await make_enterprise(services, 91, users=0)
    await services.licences.set_pool(PROVIDER, ent, LicenceProduct.ESSENTIALS, 5)
    service = graph_service(graph_settings(cloud))
    # Built by the composition root with Graph: the users check the tenant's domains.
    users = composed(services, services.settings, graph=service).users
    try:
        with pytest.raises(ValidationError) as refused:
            await users.create(global_admin(ent, 91), ent, _new("gina@gmail.com"))
        created = await users.create(
            global_admin(ent, 91), ent, _new("gina@sales.enterprise91.example")
        )
        await users.create(global_admin(ent, 91), ent, _new("hal@enterprise91.example"))
        with pytest.raises(ValidationError):
            await users.update(
                global_admin(ent, 91),
                ent,
                created.id,
                created.version,
                UserChanges(email="gina@hotmail.com"),
            )
    finally:
        await service.close()

    error = refused.value
    assert error.field == "email"
    assert error.message == (
        "gmail.com is not a domain of this organisation's Microsoft 365, so Microsoft would "
        "refuse the account. Use an address at enterprise91.example, sales.enterprise91.example."
    )
    page = await services.directory.page(ent, page_size=10)
    assert sorted(u.email for u in page.items) == [
        "gina@sales.enterprise91.example",
        "hal@enterprise91.example",
    ]
    # Three creates and an edit: the list was read once, and again for each miss.
    assert cloud.tenant_stats(tid).count("GET", "/domains") == 3
    pools = {p.product: p.used for p in await services.licences.pools(ent)}
    assert pools[LicenceProduct.ESSENTIALS] == 2  # the refused address took no licence


async def test_a_domain_verified_later_is_found_on_a_miss(cloud: SandboxServer) -> None:
    tid = seed_tenant(cloud, 92)
    service = graph_service(graph_settings(cloud))
    check = VerifiedDomains(service)
    try:
        await check(tid, "a@enterprise92.example")
        await check(tid, "b@enterprise92.example")
        assert cloud.tenant_stats(tid).count("GET", "/domains") == 1  # cached
        cloud.state.add_tenant(tid, domains=["new.example"])
        await check(tid, "c@new.example")  # a miss: read again, and found
        assert cloud.tenant_stats(tid).count("GET", "/domains") == 2
    finally:
        await service.close()


async def test_without_microsoft_the_address_is_not_held_up(cloud: SandboxServer) -> None:
    tid = seed_tenant(cloud, 93)
    cloud.state.grant_roles(tid, CLIENT_ID, ["User.ReadWrite.All"])
    service = graph_service(graph_settings(cloud))
    try:
        await VerifiedDomains(service)(tid, "anyone@gmail.com")  # 403: not checked, not refused
    finally:
        await service.close()
    assert cloud.tenant_stats(tid).statuses[403] == 1
