"""Every card the bot can produce, parsed by the official Adaptive Cards JavaScript library
(npm `adaptivecards`, in Node) and checked against the Adaptive Card 1.5 schema.

The builders are found, not listed: every public function of the `cards` package that
returns a card. Each is called with representative values, taken from a real directory
(an enterprise, users in every licence and caller ID state, a requested sync) and varied
one parameter at a time (every role, every sort, errors on forms, empty pages...). A new
builder whose parameters have no representative value fails the test, naming them: add
the value to `Samples` below.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
import types
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from enum import Enum
from pathlib import Path
from typing import Any

import pydantic
import pytest
from microsoft_teams.cards import Action, AdaptiveCard, CardElement

import cards
from cards.actions import Home
from cards.common import Card, button, paragraph
from services.bulk.service import Bulk
from services.bulk.values import ImportProgress, ImportStatus, Preview
from services.callerid import CallerIdChange
from services.container import Services
from services.db import Database
from services.domain import (
    AdminRole,
    CallerIdMode,
    LicenceProduct,
    PbxState,
    ProvisioningStatus,
    SyncStatus,
)
from services.passwords import PasswordVault
from services.provisioning import SyncFailure, SyncReport
from services.users import NewUser
from services.views import (
    ConsentChange,
    EnterpriseView,
    ExtensionRanges,
    HuntGroupView,
    Page,
    PbxStatusView,
    PoolView,
    SipLogin,
    SyncOverview,
    SyncRunView,
    UserView,
)
from tests.cardcheck import assert_valid_cards
from tests.conftest import admin_of, seed_enterprise, settings_for

CARD_TYPES: tuple[Any, ...] = (Card, AdaptiveCard)
Builder = Callable[..., Any]

# Values for the fields of forms (pydantic action models and dataclasses), by field name.
FORM_TEXT = {
    "display_name": "Grace Hopper",
    "email": "grace.hopper@contoso.example",
    "number": "+442079460011",
    "number_digits": "1111",
    "digits": "1111",
    "extension": "1042",
    "caller_name": "Grace at Contoso",
    "pai_digits": "0000",
    "query": "hopper",
    "users": "1,2",
}
# Plain strings and integers, by parameter name; anything else gets a generic value.
TEXT = {
    "digits": "1111",
    "query": "lovelace",
    "reference": "7f3a9c2e41d0",
    "admin_name": "Alex Admin",
    "help_text": "What this card does.\n\nAnd what to do next.",
}
INTEGERS = {"quarantine_days": 90, "days": 90}


def card_builders() -> dict[str, Builder]:
    """Every public function of the cards package that returns a card, by qualified name."""
    found: dict[str, Builder] = {}
    for module_info in pkgutil.iter_modules(cards.__path__):
        module = importlib.import_module(f"{cards.__name__}.{module_info.name}")
        for name, function in inspect.getmembers(module, inspect.isfunction):
            if name.startswith("_") or function.__module__ != module.__name__:
                continue
            if typing.get_type_hints(function).get("return") in CARD_TYPES:
                found[f"{module_info.name}.{name}"] = function
    return found


class Samples:
    """Representative values by type (and by parameter name for plain strings and numbers)."""

    def __init__(self, by_type: Mapping[Any, list[Any]], form_values: Mapping[str, Any]) -> None:
        self.by_type = dict(by_type)
        self.form_values = dict(form_values)

    def for_parameter(self, name: str, hint: Any) -> list[Any] | None:
        """The values to try for a parameter, the typical one first; None when unknown."""
        if _is_optional(hint):
            return self.for_parameter(name, _without_none(hint))
        if hint in self.by_type:
            return list(self.by_type[hint])
        if hint is bool:
            return [False, True]
        if hint is str:
            return [TEXT.get(name, f"Sample {name.replace('_', ' ')}")]
        if hint is int:
            return [INTEGERS.get(name, 1)]
        if isinstance(hint, type) and issubclass(hint, Enum):
            return list(hint)
        if isinstance(hint, type) and issubclass(hint, pydantic.BaseModel):
            return self._forms(hint, list(hint.model_fields))
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            return self._forms(hint, [f.name for f in dataclasses.fields(hint)])
        return None

    def _forms(self, model: type, fields: list[str]) -> list[Any] | None:
        """A form as first shown (required fields only) and as an admin filled it in."""
        values = {name: self.form_values[name] for name in fields if name in self.form_values}
        try:
            required = {name: value for name, value in values.items() if name in _required(model)}
            return [model(**required), model(**values)]
        except (TypeError, pydantic.ValidationError):
            return None


def _required(model: type) -> set[str]:
    if issubclass(model, pydantic.BaseModel):
        return {name for name, info in model.model_fields.items() if info.is_required()}
    return {
        f.name
        for f in dataclasses.fields(model)  # type: ignore[arg-type]
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }


def _is_optional(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in (
        typing.get_args(hint)
    )


def _without_none(hint: Any) -> Any:
    arms = [arm for arm in typing.get_args(hint) if arm is not type(None)]
    return arms[0] if len(arms) == 1 else typing.Union[tuple(arms)]  # noqa: UP007


@dataclasses.dataclass
class Call:
    """One way to call a builder."""

    label: str
    kwargs: dict[str, Any]


def calls_for(builder: Builder, samples: Samples) -> tuple[list[Call], list[str]]:
    """The calls that exercise a builder, and the parameters no sample exists for."""
    signature = inspect.signature(builder)
    hints = typing.get_type_hints(builder)
    options: dict[str, list[Any]] = {}
    missing: list[str] = []
    for name, parameter in signature.parameters.items():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        values = samples.for_parameter(name, hints[name])
        if values is None:
            if parameter.default is parameter.empty:
                missing.append(f"{name}: {hints[name]}")
            continue
        options[name] = values
    if missing:
        return [], missing
    required = [n for n, p in signature.parameters.items() if p.default is p.empty]
    calls = [
        Call("required only", {n: options[n][0] for n in required if n in options}),
        Call("everything", {n: values[0] for n, values in options.items()}),
    ]
    for name, values in options.items():
        for index, value in enumerate(values[1:], start=1):
            calls.append(Call(f"{name}#{index}", {**calls[1].kwargs, name: value}))
    return calls, []


# --- representative values from a real directory -------------------------------------------


async def _directory(tmp_path: Path) -> Services:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'cards.db'}")
    await db.migrate()
    vault = PasswordVault.from_settings("", tmp_path / "secret.key")
    return Services.build(db, settings_for(db.url, tmp_path), vault)


async def _samples(services: Services) -> Samples:
    ent = await seed_enterprise(services, tenant_id="tenant-cards")
    admin = admin_of(ent)
    global_admin = admin_of(ent, AdminRole.GLOBAL_ADMIN)
    users = services.users
    essentials = await users.create(
        admin,
        ent,
        NewUser("Ada Lovelace", "ada@contoso.example", LicenceProduct.ESSENTIALS),
    )
    basic = await users.create(
        admin, ent, NewUser("Tom Basic", "tom@contoso.example", LicenceProduct.BASIC)
    )
    unlicensed = await users.create(admin, ent, NewUser("Sam None", "sam@contoso.example"))
    other = await users.create(
        admin, ent, NewUser("Olga Other", "olga@contoso.example", LicenceProduct.ESSENTIALS)
    )
    other = await users.set_caller_id(
        admin,
        ent,
        other.id,
        other.version,
        CallerIdChange(CallerIdMode.OTHER, number_digits=essentials.number or ""),
    )
    anonymous = await users.create(
        admin, ent, NewUser("Ann Anon", "ann@contoso.example", LicenceProduct.ESSENTIALS)
    )
    anonymous = await users.set_caller_id(
        admin,
        ent,
        anonymous.id,
        anonymous.version,
        CallerIdChange(CallerIdMode.ANONYMOUS, caller_name="Ann", send_pai=True),
    )
    failed = dataclasses.replace(
        essentials,
        status=ProvisioningStatus.FAILED,
        status_error="Microsoft Graph: the licence is not available (request id 1a2b)",
    )
    every_user = [essentials, basic, unlicensed, other, anonymous, failed]

    enterprise = await services.enterprises.get(ent)
    automatic = dataclasses.replace(
        enterprise, sp_management_consent=True, first_sync_completed_at=datetime.now(UTC)
    )
    pools = await services.licences.pools(ent)
    exhausted = [PoolView(p.product, p.total, p.total) for p in pools]
    listed = await services.directory.page(ent, page_size=50)
    one_page = Page(items=listed.items[:2], total=len(listed.items), page=1, page_size=2)
    nobody: Page[UserView] = Page(items=[], total=0, page=1, page_size=15)
    free = await services.inventory.search_free(ent, page_size=15)
    no_free: Page[str] = Page(items=[], total=0, page=1, page_size=15)

    sales = await services.hunt_groups.create(admin, ent, "Sales")
    await services.hunt_groups.create(admin, ent, "Reception")
    sales = await services.hunt_groups.add_member(admin, ent, sales.id, essentials.id)
    groups = await services.hunt_groups.all(ent)
    on_pbx = await services.pbx_statuses.of_user(ent, essentials.id)
    retrying = dataclasses.replace(
        on_pbx,
        state=PbxState.RETRYING,
        waiting_changes=2,
        attempts=3,
        last_error="The PBX database did not answer.",
        next_attempt_at=datetime.now(UTC) + timedelta(minutes=1),
    )
    login = await services.desk_phones.issue(admin, ent, essentials.id)

    before_sync = await services.syncs.overview(ent)
    await services.syncs.request(global_admin, ent)
    requested = await services.syncs.overview(ent)
    assert requested.open_run is not None
    run = requested.open_run
    now = datetime.now(UTC)
    finished_run = dataclasses.replace(run, status=SyncStatus.PARTIALLY_FAILED, finished_at=now)
    after_sync = dataclasses.replace(
        requested,
        open_run=None,
        last_run=finished_run,
        counts={**requested.counts, ProvisioningStatus.FAILED: 1},
        users=[
            dataclasses.replace(state, status=ProvisioningStatus.FAILED, error="No licence left")
            for state in requested.users
        ],
        waiting_changes=0,
    )
    report = SyncReport(
        run=finished_run,
        enterprise=enterprise,
        total=3,
        provisioned=2,
        failed=1,
        waiting=0,
        failures=[SyncFailure("Ada Lovelace", "ada@contoso.example", "No licence left")],
    )
    clean_report = dataclasses.replace(
        report,
        run=dataclasses.replace(finished_run, status=SyncStatus.SUCCEEDED),
        provisioned=3,
        failed=0,
        failures=[],
    )
    running_report = dataclasses.replace(report, run=run)
    other_enterprise = dataclasses.replace(enterprise, id=enterprise.id + 1, name="Fabrikam Inc")
    refused = [("Sam None", "Not enough subscriptions in the Essentials pool.")]
    bulk = Bulk.of(services)
    header = "Name,E-mail,Licence,Number,Extension,Action\n"
    preview = await bulk.preview(
        ent,
        (
            header + "Grace Hopper,grace@contoso.example,Essentials,,,\n"
            "Ada King,ada@contoso.example,Essentials,,,\n"
            "Tom Basic,tom@contoso.example,Basic,+44 20 7946 0001,,\n"
            "Sam None,sam@contoso.example,,,,remove\n"
        ).encode(),
    )
    many_rejected = await bulk.preview(
        ent,
        (
            header
            + "".join(f"P {i},p{i}@contoso.example,Basic,+44 20 7946 0001,,\n" for i in range(25))
        ).encode(),
    )
    applying = ImportProgress(1, ent, ImportStatus.APPLYING, 10, 4, 5, 1, 0, 0)
    finished = dataclasses.replace(applying, status=ImportStatus.FINISHED, pending=0, applied=9)
    failed_rows = [("4", "tom@contoso.example", "That number is taken.")]
    return Samples(
        {
            UserView: every_user,
            EnterpriseView: [enterprise, automatic],
            Sequence[PoolView]: [pools, exhausted],
            PoolView: [pools[0], exhausted[0]],
            ExtensionRanges: [
                ExtensionRanges(1000, 1999, ((1003, 1499), (1501, 1999)), 4),
                ExtensionRanges(1000, 1001, (), 2),
                ExtensionRanges(1000, 1200, tuple((n, n) for n in range(1000, 1200, 2)), 100),
            ],
            Sequence[str]: [free.items, []],
            Sequence[UserView]: [[essentials, basic], []],
            Sequence[EnterpriseView]: [[enterprise, other_enterprise], []],
            Sequence[tuple[str, str]]: [refused, []],
            Sequence[CardElement]: [[paragraph("A line of text.")]],
            Sequence[Action]: [[button("Go home", Home(ent=ent))]],
            Page[UserView]: [listed, one_page, nobody],
            Page[str]: [free, no_free],
            SyncOverview: [requested, before_sync, after_sync],
            SyncRunView: [run, finished_run],
            SyncReport: [report, clean_report, running_report],
            Preview: [preview, many_rejected],
            ImportProgress: [applying, finished],
            Sequence[tuple[str, str, str]]: [failed_rows, [], failed_rows * 25],
            ConsentChange: [
                ConsentChange(enterprise, True, "Alex Admin", now),
                ConsentChange(automatic, False, "Alex Admin", now),
            ],
            datetime: [now, now + timedelta(hours=30)],
            Sequence[HuntGroupView]: [groups, [sales], []],
            PbxStatusView: [on_pbx, retrying],
            SipLogin: [login],
            Mapping[str, str]: [{global_admin.aad_object_id: "Alex Admin"}],
            dict[str, str]: [
                {
                    "form": "Something on this form needs fixing.",
                    "display_name": "Give the user a name.",
                    "number": "That number is taken.",
                    "version": "Someone else saved this user first.",
                }
            ],
        },
        {**FORM_TEXT, "ent": ent, "user_id": essentials.id, "version": essentials.version},
    )


@pytest.fixture
async def samples(tmp_path: Path) -> Samples:
    """Representative values, most of them read back from a real directory on SQLite."""
    services = await _directory(tmp_path)
    try:
        return await _samples(services)
    finally:
        await services.db.dispose()


def _payload(card: Any) -> dict[str, Any]:
    if isinstance(card, AdaptiveCard):
        return card.model_dump(by_alias=True, exclude_none=True)
    assert isinstance(card, dict), f"a card builder returned {type(card).__name__}"
    return card


def _every_card(samples: Samples) -> Iterator[tuple[str, dict[str, Any]]]:
    unexercised: dict[str, list[str]] = {}
    for name, builder in card_builders().items():
        calls, missing = calls_for(builder, samples)
        if missing:
            unexercised[name] = missing
        for call in calls:
            yield f"{name} ({call.label})", _payload(builder(**call.kwargs))
    assert not unexercised, (
        "card builders with parameters no representative value exists for (add them to the "
        f"samples in tests/test_cards_js.py): {unexercised}"
    )


def test_the_builders_are_found() -> None:
    builders = card_builders()
    # A few that must be there, so a broken discovery cannot pass with nothing to check.
    for expected in ("home.home_card", "users.create_user_card", "common.apology_card"):
        assert expected in builders
    assert all(not name.split(".")[1].startswith("_") for name in builders)


async def test_every_card_the_bot_can_produce_parses_in_the_js_library(samples: Samples) -> None:
    produced = dict(_every_card(samples))
    assert len(produced) >= 3 * len(card_builders())
    assert_valid_cards(produced)
