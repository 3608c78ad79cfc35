"""The e-mails a user receives, and how their Teams line is written and shown."""

from __future__ import annotations

import html

from services.phone import pretty
from services.provisioning.work import Person


def line_uri(person: Person, main_number: str) -> str | None:
    """The number Teams should ring: the DDI, or the main number with the extension."""
    if person.licence is None:
        return None
    if person.number:
        return person.number
    if person.extension is not None:
        return f"{main_number};ext={person.extension}"
    return None


def display_line(line: str) -> str:
    base, _, extension = line.partition(";ext=")
    shown = pretty(base)
    return f"{shown} extension {extension}" if extension else shown


# --- e-mails -----------------------------------------------------------------------------------


def confirmation_mail(person: Person, line: str | None) -> tuple[str, str]:
    """The subject and HTML body telling a user their Teams Phone is ready."""
    name = html.escape(person.display_name)
    rows = [f"<li>Sign-in: {html.escape(person.email)}</li>"]
    if person.number:
        rows.append(f"<li>Your direct number: {html.escape(pretty(person.number))}</li>")
    if person.extension is not None:
        rows.append(f"<li>Your extension: {person.extension}</li>")
    if line is None:
        rows.append("<li>Calling is not enabled for you yet.</li>")
    body = (
        f"<p>Hello {name},</p>"
        "<p>Your Microsoft Teams account is set up to make and take phone calls.</p>"
        f"<ul>{''.join(rows)}</ul>"
        "<p>Open Teams and use <b>Calls</b> to start. If calls do not work within the hour, "
        "contact your IT administrator.</p>"
    )
    return "Your Teams Phone is ready", body


def added_mail(person: Person, line: str | None) -> tuple[str, str]:
    """The subject and HTML body telling the admin who created a user that Microsoft has them:
    added and synced, with what they can call with (never their password)."""
    name = html.escape(person.display_name)
    rows = [f"<li>Sign-in: {html.escape(person.email)}</li>"]
    rows.append(
        f"<li>Calling licence: {html.escape(person.licence.label)}</li>"
        if person.licence is not None
        else "<li>No calling licence</li>"
    )
    if person.number:
        rows.append(f"<li>Direct number: {html.escape(pretty(person.number))}</li>")
    if person.extension is not None:
        rows.append(f"<li>Extension: {person.extension}</li>")
    if line is not None:
        rows.append(f"<li>Teams rings: {html.escape(display_line(line))}</li>")
    if person.send_password_email:
        to = person.password_email_to or person.email
        rows.append(f"<li>The first password was e-mailed to {html.escape(to)}</li>")
    body = (
        f"<p>{name} was added and synced to Microsoft Teams.</p>"
        f"<ul>{''.join(rows)}</ul>"
        "<p>Check their caller ID in Switchboard if you have not yet.</p>"
    )
    return f"User added: {person.display_name}", body


def password_mail(person: Person, password: str) -> tuple[str, str]:
    """The subject and HTML body carrying a new account's first password."""
    body = (
        f"<p>Hello {html.escape(person.display_name)},</p>"
        "<p>A Microsoft 365 account was created for you.</p>"
        f"<ul><li>Sign-in: {html.escape(person.email)}</li>"
        f"<li>Temporary password: <code>{html.escape(password)}</code></li></ul>"
        "<p>You will be asked to choose your own password the first time you sign in. "
        "Delete this e-mail afterwards.</p>"
    )
    return "Your new Microsoft 365 account", body


# --- running outside the bot ---------------------------------------------------------------------
