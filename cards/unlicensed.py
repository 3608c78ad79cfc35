"""Users without a calling licence: pick several and enable them together, and the result."""

from __future__ import annotations

from collections.abc import Sequence

from microsoft_teams.cards import (
    CardElement,
    Choice,
    ChoiceSetInput,
    ColumnDefinition,
    Table,
    TableCell,
    TableRow,
    TextBlock,
)

from cards.actions import EnableUsersForm, OpenDirectory, OpenSync, OpenUnlicensed
from cards.common import (
    Card,
    Errors,
    action_row,
    button,
    choice_input,
    field_error,
    frame,
    number_text,
    paragraph,
    plain,
    status_label,
    user_link_cell,
)
from services.domain import LicenceProduct
from services.views import EnterpriseView, Page, PoolView, UserView

UNLICENSED_HELP = (
    "These users exist but cannot make or take calls yet: they have no calling licence. Select "
    "several and enable them together.\n\n"
    "**Essentials** gives each user a direct number (DDI) and an extension; **Basic** an "
    "extension only. Numbers and extensions are the next free ones; you can change them on the "
    "user's card afterwards.\n\n"
    "Enabling is all or nothing: if any selected user cannot be enabled (for example the pool "
    "has too few licences), nobody is, and each refused user is listed with the reason. Your "
    "selection is kept so you can adjust it and try again."
)
ENABLED_HELP = (
    "Each enabled user got a licence from the pool, the next free extension and, with "
    "Essentials, the next free direct number. The PBX knows them now; Microsoft learns about "
    "them with the next sync.\n\n"
    "Check each user's **caller ID**: new users often still present the company's main number."
)


def _licence_choices(pools: Sequence[PoolView]) -> list[tuple[str, str]]:
    free = {pool.product: pool.free for pool in pools}
    return [
        (
            f"Essentials: direct number and extension ({free.get(LicenceProduct.ESSENTIALS, 0)} "
            "free)",
            LicenceProduct.ESSENTIALS.value,
        ),
        (
            f"Basic: extension only ({free.get(LicenceProduct.BASIC, 0)} free)",
            LicenceProduct.BASIC.value,
        ),
    ]


def _refusals(refused: Sequence[tuple[str, str]]) -> list[CardElement]:
    """Each refused user's name with the reason; users refused for the same reason share a line."""
    if not refused:
        return []
    by_reason: dict[str, list[str]] = {}
    for name, reason in refused:
        by_reason.setdefault(reason, []).append(name)
    lines = [
        f"- {', '.join(f'**{name}**' for name in names)}: {reason}"
        for reason, names in by_reason.items()
    ]
    return [
        TextBlock(
            text="Not enabled:\n\n" + "\n".join(lines),
            wrap=True,
            color="Attention",
            spacing="Small",
        )
    ]


def unlicensed_card(
    enterprise: EnterpriseView,
    users: Page[UserView],
    pools: Sequence[PoolView],
    form: EnableUsersForm | None = None,
    errors: Errors | None = None,
    refused: Sequence[tuple[str, str]] = (),
) -> Card:
    """The users without a licence as a multi-select, the product to give, and any refusals."""
    ent = enterprise.id
    form = form or EnableUsersForm(ent=ent)
    errors = errors or {}
    actions = [
        button("Directory", OpenDirectory(ent=ent)),
        button("Sync status", OpenSync(ent=ent)),
    ]
    if users.total == 0:
        return frame(
            "Users without a calling licence",
            [paragraph(f"Everyone in **{plain(enterprise.name)}** has a calling licence.")],
            help_text=UNLICENSED_HELP,
            ent=ent,
            notice=errors.get("users") or errors.get("form"),
            actions=actions,
        )
    listed = {str(user.id) for user in users.items}
    # Keep what the admin selected, as far as those users are still on the list.
    kept = [str(user_id) for user_id in form.users if str(user_id) in listed]
    picker = ChoiceSetInput(
        id="users",
        label="Users to enable",
        is_multi_select=True,
        style="expanded",
        value=",".join(kept) or None,
        choices=[
            Choice(
                title=f"{user.display_name} · {user.email}"
                + (f" · ext {user.extension}" if user.extension is not None else ""),
                value=str(user.id),
            )
            for user in users.items
        ],
        is_required=True,
        error_message="Select at least one user.",
    )
    count = f"{users.total} user{'s' if users.total != 1 else ''}"
    body: list[CardElement] = [
        paragraph(
            f"{count} of **{plain(enterprise.name)}** cannot make calls yet: they have no calling licence.",
            subtle=True,
        )
    ]
    if users.total > len(users.items):
        body.append(
            paragraph(
                f"Showing the first {len(users.items)} by name: enable these, then open the list "
                "again for the rest.",
                subtle=True,
            )
        )
    everyone = len(kept) == len(users.items)
    toggle = button(
        "Clear the selection" if everyone else f"Select all {len(users.items)}",
        OpenUnlicensed(ent=ent, select_all=not everyone),
    )
    body += [
        picker,
        action_row(toggle),
        *field_error(errors, "users"),
        *_refusals(refused),
        *choice_input(
            "licence",
            "Licence to give",
            _licence_choices(pools),
            form.licence,
            errors,
            expanded=True,
        ),
        *field_error(errors, "form"),
    ]
    return frame(
        "Users without a calling licence",
        body,
        help_text=UNLICENSED_HELP,
        ent=ent,
        notice="Nobody was enabled: see ⚠ below." if errors else None,
        actions=[button("Enable selected", EnableUsersForm(ent=ent), primary=True), *actions],
    )


def users_enabled_card(
    enterprise: EnterpriseView,
    enabled: Sequence[UserView],
    product: LicenceProduct,
    *,
    is_global_admin: bool = False,
) -> Card:
    """Who was enabled, with the number and extension each one got, and the next step for
    the admin viewing it (the Global Admin runs the sync; others ask them)."""
    ent = enterprise.id
    header = TableRow(
        cells=[
            TableCell(items=[TextBlock(text=title, weight="Bolder", wrap=True)])
            for title in ("Name", "Number", "Status")
        ]
    )
    # Three columns, the extension under the number: every word stays whole when narrow.
    rows = [
        TableRow(
            cells=[
                user_link_cell(user.display_name, ent, user.id),
                TableCell(
                    items=[
                        TextBlock(text=number_text(user.number), wrap=True),
                        TextBlock(
                            text=f"ext {user.extension}"
                            if user.extension is not None
                            else "no extension",
                            wrap=True,
                            is_subtle=True,
                            size="Small",
                            spacing="None",
                        ),
                    ]
                ),
                TableCell(items=[TextBlock(text=status_label(user.status), wrap=True)]),
            ]
        )
        for user in enabled
    ]
    table = Table(
        columns=[ColumnDefinition(width=width) for width in (4, 4, 3)],
        rows=[header, *rows],
    )
    next_step = (
        "The change syncs to Microsoft automatically."
        if enterprise.syncs_automatically
        else "Ask your Global Admin to run **Sync Teams Users** so they can call from Teams."
    )
    count = f"{len(enabled)} user{'s' if len(enabled) != 1 else ''}"
    return frame(
        f"{count} enabled with {product.label}",
        [table, paragraph(f"**Next:** check each user's caller ID. {next_step}")],
        help_text=ENABLED_HELP,
        ent=ent,
        success=f"{count} can now be reached on the PBX.",
        actions=[
            button("Sync status", OpenSync(ent=ent), primary=True),
            button("Enable more", OpenUnlicensed(ent=ent)),
            button("Directory", OpenDirectory(ent=ent)),
        ],
    )
