"""The preview of a bulk file: every row checked against the directory as it stands, with
the single-user forms' cleaners and messages, and nothing written.

The rows are the whole state the admin wants for each user (the export, edited): an empty
Number or Extension means "none", or "keep or pick one" when the licence needs it; a row
whose Action says `remove` removes the user. Users are matched by e-mail address.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.bulk.sheet import Column, Sheet, SheetRow, header_key
from services.bulk.values import Preview, RowAction, RowPlan
from services.callerid import clean_caller_name, find_owned_number
from services.domain import CallerIdMode, LicenceProduct, NumberStatus
from services.errors import DomainError, ValidationError
from services.inventory import AUTO, Auto, parse_extension
from services.models import (
    Enterprise,
    Extension,
    HuntGroup,
    HuntGroupMember,
    LicencePool,
    PhoneNumber,
    User,
    utcnow,
)
from services.phone import pretty, to_e164
from services.users import (
    EmailDomainCheck,
    clean_display_name,
    clean_email,
    refuse_basic_with_number,
)

_CHUNK = 900
AUTO_WORD = "auto"
RELEASE_WORD = "release"

_LICENCES: dict[str, LicenceProduct | None] = {
    "essentials": LicenceProduct.ESSENTIALS,
    "essential": LicenceProduct.ESSENTIALS,
    "basic": LicenceProduct.BASIC,
    "": None,
    "none": None,
    "nolicence": None,
    "nolicense": None,
    "unlicensed": None,
}
_MODES: dict[str, CallerIdMode] = {
    **dict.fromkeys(
        ("own", "ownnumber", "owndirectnumber", "ownddi", "ddi", "directnumber"),
        CallerIdMode.OWN_DDI,
    ),
    **dict.fromkeys(
        ("company", "companymain", "companymainnumber", "main", "mainnumber"),
        CallerIdMode.COMPANY_MAIN,
    ),
    **dict.fromkeys(
        ("other", "another", "anothercompanynumber", "anothernumber", "othernumber"),
        CallerIdMode.OTHER,
    ),
    **dict.fromkeys(("anonymous", "withheld", "hidden", "private"), CallerIdMode.ANONYMOUS),
}
MODE_LABELS = {
    CallerIdMode.OWN_DDI: "Own number",
    CallerIdMode.COMPANY_MAIN: "Company main number",
    CallerIdMode.OTHER: "Another company number",
    CallerIdMode.ANONYMOUS: "Anonymous",
}
_YES = {"yes", "y", "true", "1", "on", "x", "send"}
_NO = {"", "no", "n", "false", "0", "off"}
_REMOVE = {"remove", "delete", "offboard"}
_KEEP = {"", "update", "create", "add", "keep"}
_AUTO = {"auto", "automatic", "next", "nextfree", "any"}
_EXCEL_SCIENTIFIC = re.compile(r"^\+?\d+([.,]\d+)?e\+?\d+$", re.IGNORECASE)
_GROUP_SEPARATORS = re.compile(r"[;|\n]")


@dataclass
class _Current:
    """An existing user, as the preview compares with."""

    id: int
    version: int
    display_name: str
    email: str
    licence: LicenceProduct | None
    number: str | None
    extension: int | None
    callerid_mode: CallerIdMode
    callerid_number: str | None
    caller_name: str | None
    send_pai: bool
    pai_number: str | None
    groups: set[int] = field(default_factory=set)


@dataclass
class _Wanted:
    """A row's cells, cleaned: what the admin wants the user to be."""

    row: SheetRow
    email: str = ""
    remove: bool = False
    display_name: str = ""
    licence: LicenceProduct | None = None
    number: str | Auto | None = None
    extension: int | Auto | None = None
    callerid: dict[str, Any] | None = None
    groups: list[int] | None = None
    reasons: list[str] = field(default_factory=list)
    current: _Current | None = None

    def refuse(self, error: DomainError | str) -> None:
        message = error.message if isinstance(error, DomainError) else error
        # One line, whatever the cell it quotes held: reasons go into cards and CSV files.
        self.reasons.append(" ".join(message.split()))

    @property
    def ok(self) -> bool:
        return not self.reasons


@dataclass
class _Snapshot:
    """What the directory holds that the file's rows touch."""

    enterprise: Enterprise
    users: dict[str, _Current]
    by_id: dict[int, _Current]
    groups: dict[str, tuple[int, str]]
    group_names: dict[int, str]
    pools: dict[LicenceProduct, tuple[int, int]]
    numbers: dict[str, tuple[int, NumberStatus, int | None, int | None, bool]]
    extensions: dict[int, tuple[int | None, int | None]]
    free_numbers: int
    free_extensions: int
    owned: dict[tuple[str, str], str | DomainError] = field(default_factory=dict)

    def fingerprint(self) -> list[Any]:
        """Everything the preview's verdicts rest on, in a stable order."""
        e = self.enterprise
        return [
            [e.id, e.region, e.main_number, e.extension_start, e.extension_end],
            sorted((u.id, u.version, u.email, sorted(u.groups)) for u in self.users.values()),
            sorted(self.group_names.items()),
            sorted((p.value, counts) for p, counts in self.pools.items()),
            sorted((k, [str(x) for x in v]) for k, v in self.numbers.items()),
            sorted((k, list(v)) for k, v in self.extensions.items()),
            [self.free_numbers, self.free_extensions],
            sorted(
                (list(k), v if isinstance(v, str) else v.message) for k, v in self.owned.items()
            ),
        ]


def _parse_number(wanted: _Wanted, raw: str, region: str) -> str | Auto | None:
    if not raw:
        return None
    if header_key(raw) in _AUTO:
        return AUTO
    if _EXCEL_SCIENTIFIC.match(raw.replace(" ", "")):
        wanted.refuse(
            f"Excel turned the number into “{raw[:30]}”; format the Number column as Text and "
            "type the number again (or write it as +44 20 …)."
        )
        return None
    try:
        return to_e164(raw, region, field="number")
    except ValidationError as error:
        wanted.refuse(error)
        return None


def _read_row(row: SheetRow, region: str, groups: dict[str, tuple[int, str]]) -> _Wanted:
    """The cells of one row, cleaned with the forms' own cleaners."""
    wanted = _Wanted(row)
    try:
        wanted.email = clean_email(row.get(Column.EMAIL))
    except ValidationError as error:
        wanted.email = row.get(Column.EMAIL)[:254]
        wanted.refuse(error)
    action = header_key(row.get(Column.ACTION))
    if action in _REMOVE:
        wanted.remove = True
        return wanted
    if action not in _KEEP:
        wanted.refuse(
            f"“{row.get(Column.ACTION)[:30]}” is not an action; write remove to remove the "
            "user, or leave Action empty."
        )
    try:
        wanted.display_name = clean_display_name(row.get(Column.NAME))
    except ValidationError as error:
        wanted.refuse(error)
    licence_key = header_key(row.get(Column.LICENCE))
    if licence_key in _LICENCES:
        wanted.licence = _LICENCES[licence_key]
    else:
        wanted.refuse(
            f"“{row.get(Column.LICENCE)[:30]}” is not a licence; write Essentials or Basic, "
            "or leave it empty for none."
        )
    wanted.number = _parse_number(wanted, row.get(Column.NUMBER), region)
    if wanted.number is not None:
        try:
            refuse_basic_with_number(wanted.licence, wanted.number)
        except ValidationError as error:
            wanted.refuse(error)
            wanted.number = None
    if wanted.number is None and wanted.licence is LicenceProduct.ESSENTIALS:
        wanted.number = AUTO
    raw_extension = row.get(Column.EXTENSION)
    if raw_extension and header_key(raw_extension) in _AUTO:
        wanted.extension = AUTO
    elif raw_extension:
        try:
            wanted.extension = parse_extension(raw_extension)
        except ValidationError as error:
            wanted.refuse(error)
    if wanted.extension is None and wanted.licence is not None:
        wanted.extension = AUTO
    _read_caller_id(wanted, row)
    if Column.HUNT_GROUPS in row.cells:
        wanted.groups = _read_groups(wanted, row.get(Column.HUNT_GROUPS), groups)
        if wanted.groups and wanted.licence is None:
            wanted.refuse(
                f"{wanted.display_name or 'This user'} has no calling licence, so the PBX "
                "cannot ring them; give them a licence or leave Hunt groups empty."
            )
    return wanted


def _read_caller_id(wanted: _Wanted, row: SheetRow) -> None:
    cells = [
        row.get(c)
        for c in (Column.CALLERID_MODE, Column.CALLERID_NUMBER, Column.CALLER_NAME, Column.PAI)
    ]
    cells.append(row.get(Column.PAI_NUMBER))
    if not any(cells):
        return
    mode_text, number_text, name_text, pai_text, pai_number = cells
    mode: CallerIdMode | None = None
    if mode_text:
        mode = _MODES.get(header_key(mode_text))
        if mode is None:
            wanted.refuse(
                f"“{mode_text[:30]}” is not a caller ID; write Own number, Company main number, "
                "Another company number or Anonymous."
            )
    pai_key = header_key(pai_text)
    if pai_key not in _YES and pai_key not in _NO:
        wanted.refuse(f"“{pai_text[:20]}” in PAI is neither yes nor no.")
    try:
        caller_name = clean_caller_name(name_text) or ""
    except ValidationError as error:
        wanted.refuse(error)
        caller_name = ""
    if mode is CallerIdMode.OTHER and not number_text:
        wanted.refuse(
            "Another company number needs the Caller ID number: the number, or its last digits."
        )
    wanted.callerid = {
        "mode": mode.value if mode else None,
        "number_digits": number_text if mode is CallerIdMode.OTHER else "",
        "caller_name": caller_name,
        "send_pai": pai_key in _YES,
        "pai_digits": pai_number if pai_key in _YES else "",
    }


def _read_groups(wanted: _Wanted, text: str, groups: dict[str, tuple[int, str]]) -> list[int]:
    """Group names separated by semicolons (the export's way), line breaks or bars; commas
    separate names too, unless a name has one."""
    found: list[int] = []
    for part in _GROUP_SEPARATORS.split(text):
        names = [part] if _group(part, groups) or "," not in part else part.split(",")
        for name in names:
            if not name.strip():
                continue
            group = _group(name, groups)
            if group is None:
                wanted.refuse(f"No hunt group is called “{name.strip()[:40]}”; create it first.")
            elif group[0] not in found:
                found.append(group[0])
    return found


def _group(name: str, groups: dict[str, tuple[int, str]]) -> tuple[int, str] | None:
    return groups.get(" ".join(name.split()).lower())


async def _snapshot(
    session: AsyncSession, enterprise: Enterprise, numbers: set[str], extensions: set[int]
) -> _Snapshot:
    """Read what the rows touch: users, groups, pools, the numbers and extensions named."""
    users: dict[str, _Current] = {}
    rows = await session.execute(
        select(
            User.id,
            User.version,
            User.display_name,
            User.email,
            User.licence,
            User.callerid_mode,
            User.callerid_number,
            User.caller_name,
            User.send_pai,
            User.pai_number,
            PhoneNumber.e164,
            Extension.number,
        )
        .outerjoin(PhoneNumber, PhoneNumber.user_id == User.id)
        .outerjoin(Extension, Extension.user_id == User.id)
        .where(User.enterprise_id == enterprise.id)
    )
    for r in rows:
        users[r.email] = _Current(
            r.id,
            r.version,
            r.display_name,
            r.email,
            r.licence,
            r[10],
            r[11],
            r.callerid_mode,
            r.callerid_number,
            r.caller_name,
            r.send_pai,
            r.pai_number,
        )
    by_id = {u.id: u for u in users.values()}
    groups: dict[str, tuple[int, str]] = {}
    group_names: dict[int, str] = {}
    for gid, name in await session.execute(
        select(HuntGroup.id, HuntGroup.name).where(HuntGroup.enterprise_id == enterprise.id)
    ):
        groups[name.lower()] = (gid, name)
        group_names[gid] = name
    if group_names:
        for gid, uid in await session.execute(
            select(HuntGroupMember.group_id, HuntGroupMember.user_id).where(
                HuntGroupMember.group_id.in_(list(group_names))
            )
        ):
            if uid in by_id:
                by_id[uid].groups.add(gid)
    pools = {
        p.product: (p.total, p.used)
        for p in (
            await session.execute(
                select(LicencePool).where(LicencePool.enterprise_id == enterprise.id)
            )
        ).scalars()
    }
    now = utcnow()
    found_numbers: dict[str, tuple[int, NumberStatus, int | None, int | None, bool]] = {}
    listed = sorted(numbers)
    for start in range(0, len(listed), _CHUNK):
        for n in await session.execute(
            select(
                PhoneNumber.e164,
                PhoneNumber.enterprise_id,
                PhoneNumber.status,
                PhoneNumber.user_id,
                PhoneNumber.hunt_group_id,
                PhoneNumber.quarantined_until,
            ).where(PhoneNumber.e164.in_(listed[start : start + _CHUNK]))
        ):
            rested = n.quarantined_until is not None and n.quarantined_until <= now
            found_numbers[n.e164] = (n.enterprise_id, n.status, n.user_id, n.hunt_group_id, rested)
    found_extensions: dict[int, tuple[int | None, int | None]] = {}
    wanted_extensions = sorted(extensions)
    for start in range(0, len(wanted_extensions), _CHUNK):
        for x in await session.execute(
            select(Extension.number, Extension.user_id, Extension.hunt_group_id).where(
                Extension.enterprise_id == enterprise.id,
                Extension.number.in_(wanted_extensions[start : start + _CHUNK]),
            )
        ):
            found_extensions[x.number] = (x.user_id, x.hunt_group_id)
    free_numbers = (
        await session.execute(
            select(func.count())
            .select_from(PhoneNumber)
            .where(
                PhoneNumber.enterprise_id == enterprise.id,
                or_(
                    PhoneNumber.status == NumberStatus.FREE,
                    and_(
                        PhoneNumber.status == NumberStatus.QUARANTINED,
                        PhoneNumber.quarantined_until <= now,
                    ),
                ),
            )
        )
    ).scalar_one()
    free_extensions = (
        await session.execute(
            select(func.count())
            .select_from(Extension)
            .where(
                Extension.enterprise_id == enterprise.id,
                Extension.user_id.is_(None),
                Extension.hunt_group_id.is_(None),
                Extension.number.between(enterprise.extension_start, enterprise.extension_end),
            )
        )
    ).scalar_one()
    return _Snapshot(
        enterprise,
        users,
        by_id,
        groups,
        group_names,
        pools,
        found_numbers,
        found_extensions,
        int(free_numbers),
        int(free_extensions),
    )


async def _owned(
    session: AsyncSession, snap: _Snapshot, typed: str, field_name: str
) -> str | DomainError:
    """The enterprise's number a caller ID cell names (the caller ID card's own lookup)."""
    key = (field_name, typed)
    if key not in snap.owned:
        try:
            snap.owned[key] = await find_owned_number(
                session, snap.enterprise, typed, field=field_name
            )
        except ValidationError as error:
            snap.owned[key] = error
    return snap.owned[key]


def _check_number(wanted: _Wanted, snap: _Snapshot) -> None:
    if not isinstance(wanted.number, str):
        return
    e164 = wanted.number
    current = wanted.current
    if current is not None and current.number == e164:
        return
    found = snap.numbers.get(e164)
    if found is None or found[0] != snap.enterprise.id:
        wanted.refuse(f"{pretty(e164)} is not in this enterprise's inventory.")
        return
    _, status, holder, group, rested = found
    if status is NumberStatus.FREE or (status is NumberStatus.QUARANTINED and rested):
        return
    if status is NumberStatus.ASSIGNED:
        owner = snap.by_id.get(holder or 0)
        who = f" to {owner.email}" if owner else ""
        wanted.refuse(f"{pretty(e164)} is already assigned{who}; pick a free number.")
    elif group is not None:
        name = snap.group_names.get(group, "a hunt group")
        wanted.refuse(f"{pretty(e164)} rings the hunt group {name}; pick a free number.")
    else:
        wanted.refuse(
            f"{pretty(e164)} is {status.value} and cannot be assigned now; pick a free number."
        )


def _check_extension(wanted: _Wanted, snap: _Snapshot) -> None:
    if not isinstance(wanted.extension, int):
        return
    extension = wanted.extension
    enterprise = snap.enterprise
    if not enterprise.extension_start <= extension <= enterprise.extension_end:
        wanted.refuse(
            f"Extension {extension} is outside this enterprise's range "
            f"{enterprise.extension_start}–{enterprise.extension_end}."
        )
        return
    current = wanted.current
    if current is not None and current.extension == extension:
        return
    holder, group = snap.extensions.get(extension, (None, None))
    if holder is not None:
        owner = snap.by_id.get(holder)
        who = f" by {owner.email}" if owner else ""
        wanted.refuse(
            f"Extension {extension} is already taken{who}; pick another or leave the cell "
            "empty for Switchboard to choose."
        )
    elif group is not None:
        name = snap.group_names.get(group, "a hunt group")
        wanted.refuse(f"Extension {extension} rings the hunt group {name}; pick another.")


async def _check_caller_id(session: AsyncSession, wanted: _Wanted, snap: _Snapshot) -> None:
    """Resolve the caller ID's numbers as the caller ID card does; fill in the mode."""
    change = wanted.callerid
    if change is None:
        return
    current = wanted.current
    if change["mode"] is None:
        if current is not None:
            change["mode"] = current.callerid_mode.value
        else:
            own = wanted.number is not None
            change["mode"] = (CallerIdMode.OWN_DDI if own else CallerIdMode.COMPANY_MAIN).value
    if change["mode"] == CallerIdMode.OWN_DDI.value and wanted.number is None:
        if current is not None and current.callerid_mode is CallerIdMode.OWN_DDI:
            # The export's "Own number", left as it was on a row that gives the number up: the
            # edit form's rule applies, and the user presents the company's main number.
            wanted.callerid = None
            return
        wanted.refuse(
            f"{wanted.display_name or 'This user'} has no direct number of their own; give "
            "them one or present another number."
        )
    for key, name in (("number_digits", "number"), ("pai_digits", "pai_number")):
        if change[key]:
            owned = await _owned(session, snap, change[key], name)
            if isinstance(owned, DomainError):
                wanted.refuse(owned)
            else:
                change[key] = owned


def _file_duplicates(wanted: list[_Wanted]) -> None:
    """The same e-mail, number or extension on two lines: every such line is rejected."""
    checks: list[tuple[str, Any]] = [
        ("e-mail", lambda w: w.email or None),
        ("number", lambda w: w.number if isinstance(w.number, str) and not w.remove else None),
        (
            "extension",
            lambda w: w.extension if isinstance(w.extension, int) and not w.remove else None,
        ),
    ]
    for label, key in checks:
        lines: dict[Any, list[int]] = defaultdict(list)
        for w in wanted:
            value = key(w)
            if value is not None:
                lines[value].append(w.row.line)
        for w in wanted:
            value = key(w)
            others = [n for n in lines.get(value, []) if n != w.row.line] if value else []
            if others:
                shown = pretty(value) if label == "number" else str(value)
                w.refuse(
                    f"The {label} {shown} is also on line {others[0]}"
                    f"{' and more' if len(others) > 1 else ''}; each may appear once in a file."
                )


def _takes(w: _Wanted) -> LicenceProduct | None:
    if w.remove or w.licence is None:
        return None
    return w.licence if w.current is None or w.current.licence is not w.licence else None


def _gives_back(w: _Wanted) -> LicenceProduct | None:
    if w.current is None or w.current.licence is None:
        return None
    return w.current.licence if w.remove or w.licence is not w.current.licence else None


def _needs_new_number(w: _Wanted) -> bool:
    return (
        isinstance(w.number, Auto)
        and not w.remove
        and (w.current is None or w.current.number is None)
    )


def _needs_new_extension(w: _Wanted) -> bool:
    return (
        isinstance(w.extension, Auto)
        and not w.remove
        and (w.current is None or w.current.extension is None)
    )


def _file_supplies(wanted: list[_Wanted], snap: _Snapshot) -> None:
    """Licences, numbers and extensions for the whole file, or the rows that need them say
    how many are needed and free."""
    accepted = [w for w in wanted if w.ok]
    for product in LicenceProduct:
        takers = [w for w in accepted if _takes(w) is product]
        given = sum(1 for w in accepted if _gives_back(w) is product)
        total, used = snap.pools.get(product, (0, 0))
        free = total - used + given
        if len(takers) > free:
            back = f", {given} given back by other rows" if given else ""
            message = (
                f"Not enough subscriptions in the {product.label} pool for this file: "
                f"{len(takers)} needed, {free} free ({used} of {total} in use{back}). Ask your "
                f"service provider for more {product.label} licences, or take rows out."
            )
            for w in takers:
                w.refuse(message)
    named_free = sum(
        1
        for w in accepted
        if isinstance(w.number, str)
        and not w.remove
        and (w.current is None or w.current.number != w.number)
    )
    wanting = [w for w in accepted if _needs_new_number(w)]
    left = snap.free_numbers - named_free
    if len(wanting) > left:
        message = (
            f"Not enough free numbers for this file: {len(wanting)} rows leave the number to "
            f"Switchboard and {_free_numbers(left)} left besides those the file names. "
            "Ask your service provider to add numbers, or name them in the file."
        )
        for w in wanting:
            w.refuse(message)
    named_extensions = sum(
        1
        for w in accepted
        if isinstance(w.extension, int)
        and not w.remove
        and (w.current is None or w.current.extension != w.extension)
    )
    released = sum(
        1
        for w in accepted
        if w.current is not None
        and w.current.extension is not None
        and (w.remove or w.extension is None or isinstance(w.extension, int))
        and (w.remove or w.extension != w.current.extension)
    )
    wanting = [w for w in accepted if _needs_new_extension(w)]
    left = snap.free_extensions - named_extensions + released
    if len(wanting) > left:
        message = (
            f"Not enough free extensions for this file: {len(wanting)} rows leave the "
            f"extension to Switchboard and {max(left, 0)} are free. Ask your service provider "
            "to widen the range, or name extensions in the file."
        )
        for w in wanting:
            w.refuse(message)


def _free_numbers(left: int) -> str:
    left = max(left, 0)
    return f"{left} free number is" if left == 1 else f"{left} free numbers are"


def _value(x: str | int | Auto | None) -> str | int | None:
    return AUTO_WORD if isinstance(x, Auto) else x


def _show(x: object) -> str:
    if x is None:
        return "none"
    if isinstance(x, Auto):
        return "picked by Switchboard"
    if isinstance(x, str) and x.startswith("+"):
        return pretty(x)
    return str(x)


def _planned(w: _Wanted, snap: _Snapshot) -> RowPlan:
    """The row's plan for the apply, its changes in words, and its place in the order."""
    gives = _gives_back(w)
    order = (
        0 if w.remove else 1,
        int(_needs_new_number(w) or _needs_new_extension(w)),
        int(_takes(w) is not None and gives is None),
        w.row.line,
    )
    current = w.current
    if not w.ok:
        return RowPlan(w.row.line, w.email, RowAction.REJECTED, tuple(w.reasons), order=order)
    if w.remove and current is not None:  # a removal of nobody was refused above
        plan = {"kind": "remove", "user_id": current.id, "version": current.version}
        return RowPlan(w.row.line, w.email, RowAction.REMOVE, (), ("remove",), plan, order)
    licence = w.licence.value if w.licence else None
    if current is None:
        details = [
            w.licence.label if w.licence else "no licence",
            f"number {_show(w.number)}",
            f"extension {_show(w.extension)}",
        ]
        if w.groups:
            details.append("hunt groups " + ", ".join(snap.group_names[g] for g in w.groups))
        plan = {
            "kind": "create",
            "display_name": w.display_name,
            "email": w.email,
            "licence": licence,
            "number": _value(w.number),
            "extension": _value(w.extension),
            "callerid": w.callerid,
            "groups": w.groups,
        }
        return RowPlan(w.row.line, w.email, RowAction.CREATE, (), tuple(details), plan, order)
    changes: list[str] = []
    plan = {"kind": "update", "user_id": current.id, "version": current.version}
    if w.display_name != current.display_name:
        plan["display_name"] = w.display_name
        changes.append(f"name {current.display_name} → {w.display_name}")
    if w.licence is not current.licence:
        plan["licence"] = licence or RELEASE_WORD
        old = current.licence.label if current.licence else "none"
        changes.append(f"licence {old} → {w.licence.label if w.licence else 'none'}")
    for key, old_value, new_value in (
        ("number", current.number, w.number),
        ("extension", current.extension, w.extension),
    ):
        if isinstance(new_value, Auto) and old_value is not None:
            continue
        if new_value == old_value:
            continue
        plan[key] = RELEASE_WORD if new_value is None else _value(new_value)
        changes.append(f"{key} {_show(old_value)} → {_show(new_value)}")
    if w.callerid is not None and _callerid_differs(w.callerid, current):
        plan["callerid"] = w.callerid
        changes.append(f"caller ID → {MODE_LABELS[CallerIdMode(w.callerid['mode'])].lower()}")
    if w.groups is not None and set(w.groups) != current.groups:
        plan["groups"] = w.groups
        names = ", ".join(snap.group_names[g] for g in w.groups) or "none"
        changes.append(f"hunt groups → {names}")
    if not changes:
        return RowPlan(w.row.line, w.email, RowAction.UNCHANGED, order=order)
    return RowPlan(w.row.line, w.email, RowAction.UPDATE, (), tuple(changes), plan, order)


def _callerid_differs(change: dict[str, Any], current: _Current) -> bool:
    mode = CallerIdMode(change["mode"])
    chosen = change["number_digits"] if mode is CallerIdMode.OTHER else None
    pai = change["pai_digits"] if change["send_pai"] and change["pai_digits"] else None
    return (mode, chosen, change["caller_name"] or None, change["send_pai"], pai) != (
        current.callerid_mode,
        current.callerid_number,
        current.caller_name,
        current.send_pai,
        current.pai_number,
    )


async def plan_sheet(
    session: AsyncSession,
    enterprise: Enterprise,
    sheet: Sheet,
    data: bytes,
    email_domain_check: EmailDomainCheck | None = None,
) -> Preview:
    """Check every row of the sheet against the directory as this session sees it."""
    group_rows = await session.execute(
        select(HuntGroup.id, HuntGroup.name).where(HuntGroup.enterprise_id == enterprise.id)
    )
    groups = {name.lower(): (gid, name) for gid, name in group_rows}
    wanted = [_read_row(row, enterprise.region, groups) for row in sheet.rows]
    snap = await _snapshot(
        session,
        enterprise,
        {w.number for w in wanted if isinstance(w.number, str)},
        {w.extension for w in wanted if isinstance(w.extension, int)},
    )
    _file_duplicates(wanted)
    for w in wanted:
        w.current = snap.users.get(w.email)
        if w.remove:
            if w.current is None and w.ok:
                w.refuse(f"No user has the e-mail {w.email}, so there is nobody to remove.")
            continue
        _check_number(w, snap)
        _check_extension(w, snap)
        await _check_caller_id(session, w, snap)
    if email_domain_check is not None:
        await _check_domains(enterprise, wanted, email_domain_check)
    _file_supplies(wanted, snap)
    rows = [_planned(w, snap) for w in wanted]
    digest = hashlib.sha256(data)
    digest.update(repr(snap.fingerprint()).encode())
    return Preview(enterprise.id, digest.hexdigest()[:32], rows, list(sheet.notes))


async def _check_domains(
    enterprise: Enterprise, wanted: list[_Wanted], check: EmailDomainCheck
) -> None:
    """New users' addresses against the tenant's verified domains, once per domain."""
    verdicts: dict[str, DomainError | None] = {}
    for w in wanted:
        if w.remove or w.current is not None or not w.ok:
            continue
        domain = w.email.rpartition("@")[2]
        if domain not in verdicts:
            try:
                await check(enterprise.tenant_id, w.email)
                verdicts[domain] = None
            except DomainError as error:
                verdicts[domain] = error
        refusal = verdicts[domain]
        if refusal is not None:
            w.refuse(refusal)


def counts_by_action(rows: list[RowPlan]) -> Counter[RowAction]:
    """How many rows do each thing."""
    return Counter(row.action for row in rows)
