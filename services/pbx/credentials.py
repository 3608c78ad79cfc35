"""SIP credentials for a desk phone: generated, shown to the admin once, kept only as the
digest hash Asterisk checks (`md5_cred` = md5("username:realm:password")).

The password itself is never stored, logged or audited; issuing again replaces it.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import delete

from services import journal
from services.db import Database
from services.enterprises import load_enterprise
from services.errors import NotFoundError, ValidationError
from services.models import SipCredential, User, utcnow
from services.passwords import generate_password
from services.pbx.lines import endpoint_id
from services.views import Actor, SipLogin

# Letters and digits only: desk phones' keypads and provisioning files mangle symbols.
PASSWORD_LENGTH = 24


def md5_cred(username: str, realm: str, password: str) -> str:
    """The HA1 digest of RFC 2617 that Asterisk's ps_auths.md5_cred holds."""
    return hashlib.md5(f"{username}:{realm}:{password}".encode(), usedforsecurity=False).hexdigest()


def generate_sip_password(length: int = PASSWORD_LENGTH) -> str:
    """A random SIP password of letters of both cases and digits."""
    return generate_password(length, symbols="")


class DeskPhones:
    """Desk phone SIP logins of the users."""

    def __init__(self, db: Database, realm: str, registrar: str = "") -> None:
        self.db = db
        self.realm = realm
        self.registrar = registrar

    async def issue(self, actor: Actor, enterprise_id: int, user_id: int) -> SipLogin:
        """Give the user a desk phone login (replacing any earlier one) and queue it for the PBX."""
        async with self.db.unit_of_work() as uow:
            session = uow.session
            await load_enterprise(session, enterprise_id)
            user = await session.get(User, user_id)
            if user is None or user.enterprise_id != enterprise_id:
                raise NotFoundError("That user does not exist in this enterprise.", field="user")
            if user.licence is None:
                raise ValidationError(
                    f"{user.display_name} has no calling licence, so the PBX has no line for a "
                    "desk phone; give them a licence first.",
                    field="user",
                )
            username = endpoint_id(enterprise_id, user_id)
            password = generate_sip_password()
            credential = await session.get(SipCredential, user_id)
            replaced = credential is not None
            if credential is None:
                credential = SipCredential(user_id=user_id)
                session.add(credential)
            credential.username = username
            credential.realm = self.realm
            credential.md5_cred = md5_cred(username, self.realm, password)
            credential.issued_at = utcnow()
            journal.enqueue_for_pbx(session, enterprise_id, user_id, "user.desk_phone")
            journal.audit(
                session,
                actor,
                enterprise_id,
                "user.desk_phone",
                user.email,
                after={"sip_username": username, "replaced": replaced},
            )
            await uow.commit()
        return SipLogin(
            username=username, password=password, realm=self.realm, registrar=self.registrar
        )

    async def revoke(self, actor: Actor, enterprise_id: int, user_id: int) -> bool:
        """Take the user's desk phone login away; False if they had none."""
        async with self.db.unit_of_work() as uow:
            session = uow.session
            user = await session.get(User, user_id)
            if user is None or user.enterprise_id != enterprise_id:
                raise NotFoundError("That user does not exist in this enterprise.", field="user")
            gone = await session.execute(
                delete(SipCredential).where(SipCredential.user_id == user_id)
            )
            if getattr(gone, "rowcount", 0) != 1:
                return False
            journal.enqueue_for_pbx(session, enterprise_id, user_id, "user.desk_phone")
            journal.audit(
                session, actor, enterprise_id, "user.desk_phone.revoke", user.email, before=None
            )
            await uow.commit()
        return True

    async def has_desk_phone(self, enterprise_id: int, user_id: int) -> bool:
        """Whether the user has a desk phone login."""
        async with self.db.unit_of_work(readonly=True) as uow:
            user = await uow.session.get(User, user_id)
            if user is None or user.enterprise_id != enterprise_id:
                raise NotFoundError("That user does not exist in this enterprise.", field="user")
            return await uow.session.get(SipCredential, user_id) is not None
