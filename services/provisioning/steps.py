"""The steps of one user's setup in Microsoft: Entra user, licence, number, policy, verify, notify."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from sqlalchemy import update

from services.config import GraphSettings, SyncSettings
from services.db import Database
from services.domain import LicenceProduct, ProvisioningStep
from services.graph import (
    VOICE_ROUTING_POLICY_TYPE,
    EntraUser,
    GraphError,
    GraphOperations,
    GraphService,
    NumberOrder,
)
from services.models import User
from services.passwords import PasswordVault, generate_password
from services.provisioning.mails import (
    added_mail,
    confirmation_mail,
    display_line,
    line_uri,
    password_mail,
)
from services.provisioning.work import (
    AUTHORS,
    NEW_SETUP_KINDS,
    NEXT_STEP,
    Claimed,
    StepAgain,
    Work,
)

# One logger for the whole engine, named as it was before the package split.
logger = logging.getLogger("services.provisioning")


class ProvisioningSteps:
    """The per-user steps of a sync, each of which looks before it changes anything."""

    def __init__(
        self,
        db: Database,
        vault: PasswordVault,
        graph: GraphService,
        sync: SyncSettings,
        graph_settings: GraphSettings,
    ) -> None:
        self.db = db
        self.vault = vault
        self.graph = graph
        self.sync = sync
        self.graph_settings = graph_settings

    # --- the steps ---------------------------------------------------------------------------

    async def do_step(self, work: Work, step: ProvisioningStep) -> ProvisioningStep:
        """Take the item through one step; returns the step that follows."""
        handlers: dict[ProvisioningStep, Callable[[Work], Awaitable[None]]] = {
            ProvisioningStep.ENTRA_USER: self._entra_user,
            ProvisioningStep.LICENCE: self._licence,
            ProvisioningStep.NUMBER: self._number,
            ProvisioningStep.POLICY: self._policy,
            ProvisioningStep.VERIFY: self._verify,
            ProvisioningStep.NOTIFY: self._notify,
        }
        await handlers[step](work)
        return NEXT_STEP[step]

    def _usage_location(self, claimed: Claimed) -> str:
        region = (claimed.region or "").upper()
        return (
            region if len(region) == 2 and region.isalpha() else self.graph_settings.usage_location
        )

    async def _entra(self, work: Work) -> EntraUser:
        """The user's account, looked up again after a restart."""
        if work.entra is None:
            person = work.known_person
            found = None
            if person.entra_object_id:
                found = await work.ops.find_user(person.entra_object_id)
            if found is None or found.user_principal_name.lower() != person.email.lower():
                found = await work.ops.find_user(person.email)
            if found is None:
                raise StepAgain(
                    "The Microsoft 365 account is missing; it will be set up again.",
                    ProvisioningStep.ENTRA_USER,
                )
            work.entra = found
        return work.entra

    async def _entra_user(self, work: Work) -> None:
        """Find the account by its e-mail (or known id); create it only when there is none."""
        person = work.known_person
        ops = work.ops
        found: EntraUser | None = None
        if person.entra_object_id:
            found = await ops.find_user(person.entra_object_id)
            if found is not None and found.user_principal_name.lower() != person.email.lower():
                found = None  # the e-mail changed: the account to set up is another one
        if found is None:
            found = await ops.find_user(person.email)
        location = self._usage_location(work.claimed)
        if found is None:
            password = (
                self.vault.open(person.password_ciphertext) if person.password_ciphertext else None
            )
            found, created = await ops.create_user(
                display_name=person.display_name,
                user_principal_name=person.email,
                usage_location=location,
                password=password or generate_password(),
            )
            # Only a password we still hold can be e-mailed: it must be the account's own.
            work.entra_created = created and password is not None
        else:
            changes: dict[str, Any] = {}
            if not found.usage_location:
                changes["usageLocation"] = location
            fields = work.claimed.payload.get("fields") or []
            if "display_name" in fields and found.display_name != person.display_name:
                changes["displayName"] = person.display_name
            if changes:
                await ops.update_user(found.id, changes)
                found = replace(
                    found,
                    usage_location=changes.get("usageLocation", found.usage_location),
                    display_name=changes.get("displayName", found.display_name),
                )
        work.entra = found

    def _sku(self, product: LicenceProduct) -> str:
        return (
            self.graph_settings.essentials_sku
            if product is LicenceProduct.ESSENTIALS
            else self.graph_settings.basic_sku
        )

    async def _licence(self, work: Work) -> None:
        """Give the licence the directory says, and take away our other calling licence."""
        person = work.known_person
        entra = await self._entra(work)
        ours = {self.graph_settings.essentials_sku, self.graph_settings.basic_sku}
        wanted = self._sku(person.licence) if person.licence else None
        add = [wanted] if wanted and wanted not in entra.licences else []
        remove = sorted(sku for sku in entra.licences & ours if sku != wanted)
        if add or remove:
            await work.ops.set_licences(entra.id, add, remove)
            work.entra = replace(entra, licences=(entra.licences | set(add)) - set(remove))

    async def _number(self, work: Work) -> None:
        """Give the user their line in Teams (DDI, or main number with extension)."""
        person = work.known_person
        entra = await self._entra(work)
        ops = work.ops
        line = line_uri(person, work.claimed.main_number)
        teams = await ops.teams_user(entra.id)
        work.teams = teams
        if line is None:
            if person.licence is None and work.claimed.kinds - NEW_SETUP_KINDS - {"retry"}:
                # The calling licence was taken away: so is the line.
                for number in teams.numbers if teams else {}:
                    await self._release_number(ops, number)
            return
        if teams is None:
            # Teams sets a user up some time after the licence arrives; until then a number
            # cannot be assigned. The item is tried again later, with backoff.
            raise GraphError(
                "Teams has not set the user up yet after the licence was assigned; "
                "Switchboard will try again.",
                status=503,
            )
        if teams.has_primary(line):
            return
        order = await ops.assign_number(line, entra.id)
        if not order.ok:
            order = await self._recover_number(ops, person.entra_object_id, entra.id, line, order)
        work.teams = None

    async def _recover_number(
        self,
        ops: GraphOperations,
        previous_account: str | None,
        account: str,
        line: str,
        order: NumberOrder,
    ) -> NumberOrder:
        """After a failed or refused order: see who holds the number, and act or explain."""
        holder = await ops.number_holder(line)
        if holder == account:
            return NumberOrder("succeeded", order.detail)
        if holder is not None and holder == previous_account:
            # The user's previous account still holds it (the e-mail changed).
            await self._release_number(ops, line)
            order = await ops.assign_number(line, account)
            if order.ok:
                return order
        elif holder is not None:
            other = await ops.find_user(holder)
            who = other.user_principal_name if other else f"the account with id {holder}"
            raise GraphError(
                f"Microsoft could not assign {display_line(line)}: Teams has it assigned to "
                f"another account ({who}). Release it there, or give this user another number.",
                status=409,
            )
        raise GraphError(
            f"Microsoft could not assign {display_line(line)}: "
            f"{order.detail or 'the number order failed.'}",
            status=409,
        )

    async def _release_number(self, ops: GraphOperations, number: str) -> None:
        # unassign_number counts a number nobody holds as released.
        order = await ops.unassign_number(number)
        if not order.ok:
            raise GraphError(
                f"Microsoft could not release {display_line(number)}: {order.detail}",
                status=409,
            )

    def _voice_policy_name(self, work: Work) -> str:
        """The policy the enterprise names, else the provider's default (may be empty)."""
        return work.claimed.voice_routing_policy or self.graph_settings.voice_routing_policy

    async def _voice_policy_id(self, work: Work, *, refresh: bool = False) -> str | None:
        """The tenant's id of the voice routing policy (configured by name), if one is."""
        name = self._voice_policy_name(work)
        return await self._policy_id_named(work, name, refresh=refresh) if name else None

    async def _policy_id_named(self, work: Work, name: str, *, refresh: bool = False) -> str:
        """The tenant's id of the voice routing policy called `name`; an error if it has none."""
        policy_id = await work.ops.policy_id(VOICE_ROUTING_POLICY_TYPE, name, refresh=refresh)
        if policy_id is None:
            raise GraphError(
                f"Teams has no voice routing policy named “{name}” in this organisation. "
                "Create it in the Teams admin center (Voice > Voice routing policies), or "
                "correct the name (`switchboard enterprise voice-routing`, or "
                "VOICE_ROUTING_POLICY for every enterprise).",
                status=404,
            )
        return policy_id

    async def _policy(self, work: Work) -> None:
        """Give calling users the Direct Routing voice routing policy, if one is configured."""
        person = work.known_person
        name = self._voice_policy_name(work)
        if not name or line_uri(person, work.claimed.main_number) is None:
            return
        entra = await self._entra(work)
        policy_id = await self._policy_id_named(work, name)
        teams = work.teams or await work.ops.teams_user(entra.id)
        if teams is not None and teams.policy(VOICE_ROUTING_POLICY_TYPE) == policy_id:
            return
        try:
            await work.ops.assign_policy(entra.id, VOICE_ROUTING_POLICY_TYPE, policy_id)
        except GraphError as error:
            if error.status not in (400, 404):
                raise
            # The cached id may be stale (the policy was recreated): ask Graph again, once.
            fresh = await self._policy_id_named(work, name, refresh=True)
            if fresh == policy_id:
                raise
            await work.ops.assign_policy(entra.id, VOICE_ROUTING_POLICY_TYPE, fresh)
        work.teams = None

    async def _verify(self, work: Work) -> None:
        """Read the Teams configuration back: the number and voice really took effect."""
        person = work.known_person
        line = line_uri(person, work.claimed.main_number)
        if line is None:
            return
        entra = await self._entra(work)
        policy = self._voice_policy_name(work)
        policy_id = await self._voice_policy_id(work)
        problems: list[str] = []
        for attempt in range(self.sync.verify_attempts):
            if attempt:
                await asyncio.sleep(self.sync.verify_delay_seconds)
            teams = await work.ops.teams_user(entra.id)
            problems = []
            if teams is None or not teams.has_primary(line):
                problems.append(f"{display_line(line)} is not on the user yet")
            elif not teams.enterprise_voice:
                problems.append("enterprise voice is not on yet")
            if policy and (teams is None or teams.policy(VOICE_ROUTING_POLICY_TYPE) != policy_id):
                problems.append(f"the voice routing policy {policy} is not in effect yet")
            if not problems:
                work.teams = teams
                return
        # Teams has not caught up: look again (and order again if need be) later.
        raise StepAgain(
            "Teams does not show the changes yet: " + "; ".join(problems),
            ProvisioningStep.NUMBER,
        )

    async def _notify(self, work: Work) -> None:
        """Confirmation and password e-mails as asked; then the password is forgotten."""
        person = work.known_person
        sender = self.graph_settings.mail_sender
        claimed = work.claimed
        if sender and claimed.kinds & NEW_SETUP_KINDS:
            mailer = work.ops
            if self.graph_settings.mail_tenant_id:
                mailer = GraphOperations(self.graph.tenant(self.graph_settings.mail_tenant_id))
            if person.notify_user:
                subject, body = confirmation_mail(person, line_uri(person, claimed.main_number))
                await mailer.send_mail(sender, person.email, subject, body)
            password = (
                self.vault.open(person.password_ciphertext)
                if person.send_password_email and work.entra_created and person.password_ciphertext
                else None
            )
            if password:
                subject, body = password_mail(person, password)
                await mailer.send_mail(
                    sender, person.password_email_to or person.email, subject, body
                )
            await self._tell_creators(work, mailer, sender)
        elif person.send_password_email and work.entra_created and not sender:
            logger.warning(
                "No sender mailbox is configured (MAIL_SENDER): the sign-in e-mail asked for was not sent"
            )
        if person.password_ciphertext and claimed.user_id is not None:
            async with self.db.unit_of_work() as uow:
                await uow.session.execute(
                    update(User)
                    .where(User.id == claimed.user_id)
                    .values(password_ciphertext=None)
                    .execution_options(synchronize_session=False)
                )
                await uow.commit()

    async def _tell_creators(self, work: Work, mailer: GraphOperations, sender: str) -> None:
        """The confirmation e-mail to each admin who created the user, found in Entra by their
        object id (Teams does not give their address): to their mail address, else their
        sign-in name (in most tenants the same address)."""
        claimed = work.claimed
        authors = [str(author) for author in claimed.payload.get(AUTHORS) or []]
        if not authors or "user.create" not in claimed.kinds:
            return
        person = work.known_person
        subject, body = added_mail(person, line_uri(person, claimed.main_number))
        for author in authors:
            admin = await work.ops.find_user(author)
            if admin is None:
                logger.info("The admin who created user %s is not in Entra", claimed.user_id)
                continue
            address = admin.mail or admin.user_principal_name
            await mailer.send_mail(sender, address, subject, body)

    async def remove(self, work: Work) -> None:
        """Take a removed user's numbers and our calling licences away (the account stays)."""
        payload = work.claimed.payload
        ops = work.ops
        entra = None
        if payload.get("entra_object_id"):
            entra = await ops.find_user(str(payload["entra_object_id"]))
        if entra is None and payload.get("email"):
            entra = await ops.find_user(str(payload["email"]))
        if entra is None:
            return
        teams = await ops.teams_user(entra.id)
        for number in teams.numbers if teams else {}:
            await self._release_number(ops, number)
        ours = {self.graph_settings.essentials_sku, self.graph_settings.basic_sku}
        remove = sorted(entra.licences & ours)
        if remove:
            await ops.set_licences(entra.id, [], remove)
