"""Drift: a difference between what the directory says and what the PBX holds, told for an
operator, with what a repair must rewrite or delete."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from services.pbx.backend import PbxInventory, RouteKind
from services.pbx.lines import GroupLine, PbxLine
from services.phone import pretty

# Endpoint id -> the user's display name, for messages.
Names = Mapping[str, str]


class DriftKind(StrEnum):
    """The kinds of difference between the directory and the PBX."""

    UNKNOWN_ENDPOINT = "unknown_endpoint"
    MISSING_LINE = "missing_line"
    WRONG_ROUTE = "wrong_route"
    STRAY_ROUTE = "stray_route"
    MISSING_ROUTE = "missing_route"
    CALLER_ID = "caller_id"
    HUNT_GROUPS = "hunt_groups"
    DESK_PHONE = "desk_phone"
    RING = "ring"
    ENDPOINT_SETTINGS = "endpoint_settings"
    ORPHAN_ROW = "orphan_row"
    QUEUE_SETTINGS = "queue_settings"
    FOREIGN_MEMBER = "foreign_member"


@dataclass(frozen=True)
class Drift:
    """One difference, described for an operator.

    A repair rewrites the line of `endpoint` and the hunt group of `queue`, deletes `row`
    (table, key) and `route`; a drift naming none of them is only reported.
    """

    kind: DriftKind
    endpoint: str | None
    detail: str
    route: tuple[RouteKind, str] | None = None
    row: tuple[str, str] | None = None
    queue: str | None = None


def to_rewrite(
    found: Sequence[Drift], lines: Sequence[PbxLine], groups: Sequence[GroupLine]
) -> tuple[list[PbxLine], list[GroupLine]]:
    """The lines and groups a repair writes again: those a drift names, in a stable order."""
    endpoints = {item.endpoint for item in found}
    queues = {item.queue for item in found}
    return (
        sorted(
            (line for line in lines if line.endpoint in endpoints), key=lambda line: line.endpoint
        ),
        sorted((group for group in groups if group.queue in queues), key=lambda g: g.queue),
    )


def key_label(kind: RouteKind, key: str) -> str:
    """A number or extension as an operator reads it."""
    return f"number {pretty(key)}" if kind is RouteKind.DDI else f"extension {key}"


def _caller(line: PbxLine) -> str:
    caller = line.caller_id
    extras = [
        "withheld" if caller.private else "",
        f"PAI {caller.pai_number}" if caller.send_pai else "",
    ]
    shown = ", ".join(e for e in extras if e)
    return caller.rendered() + (f" ({shown})" if shown else "")


def compare(
    desired: Mapping[str, PbxLine],
    held: PbxInventory,
    names: Names,
    groups: Sequence[GroupLine] = (),
) -> list[Drift]:
    """Every difference between the lines (and the hunt groups' routes) the directory wants
    and what the PBX holds."""
    drift: list[Drift] = []

    def who(endpoint: str | None) -> str:
        if endpoint is None:
            return "nobody"
        name = names.get(endpoint)
        return f"{endpoint} ({name})" if name else endpoint

    for endpoint in sorted(set(held.lines) - set(desired)):
        drift.append(
            Drift(
                DriftKind.UNKNOWN_ENDPOINT,
                endpoint,
                f"endpoint {endpoint} is on the PBX but belongs to no licensed user",
            )
        )
    expected: dict[tuple[RouteKind, str], str] = {}
    for line in desired.values():
        if line.extension is not None:
            expected[(RouteKind.EXTENSION, line.extension)] = line.endpoint
        if line.ddi is not None:
            expected[(RouteKind.DDI, line.ddi)] = line.endpoint
    for group in groups:
        for kind, key in ((RouteKind.EXTENSION, group.extension), (RouteKind.DDI, group.ddi)):
            if key is None:
                continue
            route = held.routes.get((kind, key))
            if route is None or route.target != group.queue:
                drift.append(
                    Drift(
                        DriftKind.MISSING_ROUTE if route is None else DriftKind.WRONG_ROUTE,
                        None,
                        f"{key_label(kind, key)} does not ring hunt group queue {group.queue}",
                        queue=group.queue,
                    )
                )
    group_keys = {
        (kind, key)
        for group in groups
        for kind, key in ((RouteKind.EXTENSION, group.extension), (RouteKind.DDI, group.ddi))
        if key is not None
    }
    judged = (
        {k for k, r in held.routes.items() if r.endpoint is not None} | set(expected)
    ) - group_keys
    for kind, key in sorted(judged):
        route = held.routes.get((kind, key))
        owner = expected.get((kind, key))
        label = key_label(kind, key)
        if route is None:
            drift.append(
                Drift(
                    DriftKind.MISSING_ROUTE,
                    owner,
                    f"{label} is not routed; the directory gives it to {who(owner)}",
                    (kind, key),
                )
            )
        elif owner is None:
            drift.append(
                Drift(
                    DriftKind.STRAY_ROUTE,
                    route.endpoint,
                    f"{label} rings {who(route.endpoint)}, but the directory gives it to nobody",
                    (kind, key),
                )
            )
        elif route.endpoint != owner:
            rung = who(route.endpoint) if route.endpoint else route.target
            drift.append(
                Drift(
                    DriftKind.WRONG_ROUTE,
                    owner,
                    f"{label} rings {rung}; the directory gives it to {who(owner)}",
                    (kind, key),
                )
            )
    for endpoint in sorted(desired):
        want = desired[endpoint]
        have = held.lines.get(endpoint)
        if have is None:
            drift.append(
                Drift(
                    DriftKind.MISSING_LINE,
                    endpoint,
                    f"{who(endpoint)} has no endpoint on the PBX",
                )
            )
            continue
        if have.caller_id != want.caller_id:
            drift.append(
                Drift(
                    DriftKind.CALLER_ID,
                    endpoint,
                    f"caller ID of {who(endpoint)} differs: the PBX has {_caller(have)}, "
                    f"the directory says {_caller(want)}",
                )
            )
        if have.hunt_groups != want.hunt_groups:
            drift.append(
                Drift(
                    DriftKind.HUNT_GROUPS,
                    endpoint,
                    f"hunt groups of {who(endpoint)} differ: the PBX has "
                    f"{', '.join(have.hunt_groups) or 'none'}, the directory says "
                    f"{', '.join(want.hunt_groups) or 'none'}",
                )
            )
        if have.sip != want.sip:
            state = (
                "a different desk phone login"
                if have.sip and want.sip
                else (
                    "a desk phone login the directory does not know"
                    if have.sip
                    else "no desk phone login"
                )
            )
            drift.append(
                Drift(DriftKind.DESK_PHONE, endpoint, f"{who(endpoint)} has {state} on the PBX")
            )
    return drift
