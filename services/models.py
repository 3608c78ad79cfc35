"""The database schema of the directory: SQLAlchemy 2 declarative models.

Invariants that must hold under concurrency live here as constraints, not in
Python: a number or extension belongs to at most one user, an e-mail is unique
per enterprise, a licence pool never hands out more than it holds, and an
enterprise has at most one sync open at a time.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.domain import (
    AdminRole,
    CallerIdMode,
    LicenceProduct,
    NoticeKind,
    NumberStatus,
    OutboxStatus,
    ProvisioningAction,
    ProvisioningStatus,
    ProvisioningStep,
    SyncStatus,
)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Digit strings compare byte by byte, so prefix ranges use the index on every database.
DigitString = String(20).with_variant(String(20, collation="C"), "postgresql")


class Base(DeclarativeBase):
    """Declarative base with stable constraint names for migrations and error mapping."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _enum(cls: type[enum.StrEnum]) -> Enum:
    return Enum(
        cls,
        native_enum=False,
        length=24,
        validate_strings=True,
        values_callable=lambda members: [m.value for m in members],
    )


class Enterprise(Base):
    """A customer of the service provider: one Entra tenant."""

    __tablename__ = "enterprises"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    tenant_id: Mapped[str] = mapped_column(String(64), unique=True)
    main_number: Mapped[str] = mapped_column(String(20))
    region: Mapped[str] = mapped_column(String(2), default="GB")
    extension_start: Mapped[int] = mapped_column(Integer)
    extension_end: Mapped[int] = mapped_column(Integer)
    sp_management_consent: Mapped[bool] = mapped_column(Boolean, default=False)
    first_sync_completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # The Teams voice routing policy (its name) for this enterprise; None: the provider's default.
    voice_routing_policy: Mapped[str | None] = mapped_column(String(256))

    __table_args__ = (CheckConstraint("extension_start <= extension_end", name="extension_range"),)


class PhoneNumber(Base):
    """A direct number (DDI) of an enterprise's inventory, stored in E.164."""

    __tablename__ = "phone_numbers"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprises.id", ondelete="CASCADE"))
    e164: Mapped[str] = mapped_column(DigitString, unique=True)
    # The digits of the number reversed: "ends with 1111" becomes a prefix range on an index.
    reversed_digits: Mapped[str] = mapped_column(DigitString)
    status: Mapped[NumberStatus] = mapped_column(_enum(NumberStatus), default=NumberStatus.FREE)
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), unique=True
    )
    # The hunt group this number rings (held back from users as RESERVED).
    hunt_group_id: Mapped[int | None] = mapped_column(
        ForeignKey("hunt_groups.id", ondelete="SET NULL"), unique=True
    )
    quarantined_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    __table_args__ = (
        Index("ix_phone_numbers_search", "enterprise_id", "status", "reversed_digits"),
        Index("ix_phone_numbers_next_free", "enterprise_id", "status", "e164"),
        CheckConstraint("(status = 'assigned') = (user_id IS NOT NULL)", name="assigned_has_user"),
    )


class Extension(Base):
    """One extension of an enterprise's range, materialised so allocation can lock rows."""

    __tablename__ = "extensions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprises.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), unique=True
    )
    # A hunt group's extension: taken like a user's, so nobody else is given it.
    hunt_group_id: Mapped[int | None] = mapped_column(
        ForeignKey("hunt_groups.id", ondelete="SET NULL"), unique=True
    )

    __table_args__ = (
        UniqueConstraint("enterprise_id", "number"),
        Index("ix_extensions_free", "enterprise_id", "user_id", "number"),
    )


class LicencePool(Base):
    """How many licences of one product an enterprise has, and how many are in use."""

    __tablename__ = "licence_pools"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprises.id", ondelete="CASCADE"))
    product: Mapped[LicenceProduct] = mapped_column(_enum(LicenceProduct))
    total: Mapped[int] = mapped_column(Integer, default=0)
    used: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (
        UniqueConstraint("enterprise_id", "product"),
        CheckConstraint("used >= 0 AND used <= total", name="within_pool"),
    )


class User(Base):
    """A person of an enterprise who makes and takes calls through the PBX."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprises.id", ondelete="CASCADE"))
    display_name: Mapped[str] = mapped_column(String(256))
    email: Mapped[str] = mapped_column(String(254))
    licence: Mapped[LicenceProduct | None] = mapped_column(_enum(LicenceProduct))
    callerid_mode: Mapped[CallerIdMode] = mapped_column(
        _enum(CallerIdMode), default=CallerIdMode.COMPANY_MAIN
    )
    callerid_number: Mapped[str | None] = mapped_column(String(20))
    caller_name: Mapped[str | None] = mapped_column(String(64))
    send_pai: Mapped[bool] = mapped_column(Boolean, default=False)
    pai_number: Mapped[str | None] = mapped_column(String(20))
    # Encrypted, and only until the sync has created the Entra account and sent the e-mail.
    password_ciphertext: Mapped[str | None] = mapped_column(Text)
    send_password_email: Mapped[bool] = mapped_column(Boolean, default=False)
    # Where the password e-mail goes; None: to the account's own address.
    password_email_to: Mapped[str | None] = mapped_column(String(254))
    notify_user: Mapped[bool] = mapped_column(Boolean, default=False)
    provisioning_status: Mapped[ProvisioningStatus] = mapped_column(
        _enum(ProvisioningStatus), default=ProvisioningStatus.NOT_SYNCED
    )
    provisioning_error: Mapped[str | None] = mapped_column(Text)
    entra_object_id: Mapped[str | None] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    __mapper_args__ = {"version_id_col": version}
    __table_args__ = (
        UniqueConstraint("enterprise_id", "email"),
        Index("ix_users_enterprise_name", "enterprise_id", "display_name"),
        # The directory's default order: a page is read off the index, not sorted anew.
        Index("ix_users_enterprise_lower_name", "enterprise_id", text("lower(display_name)")),
        Index("ix_users_enterprise_licence", "enterprise_id", "licence"),
    )


class Admin(Base):
    """A Teams user allowed to use the bot, and in which role."""

    __tablename__ = "admins"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    aad_object_id: Mapped[str] = mapped_column(String(64))
    # None for a service provider admin, who may act for any enterprise.
    enterprise_id: Mapped[int | None] = mapped_column(
        ForeignKey("enterprises.id", ondelete="CASCADE")
    )
    role: Mapped[AdminRole] = mapped_column(_enum(AdminRole))
    display_name: Mapped[str] = mapped_column(String(256), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (UniqueConstraint("aad_object_id", "enterprise_id"),)


class OutboxItem(Base):
    """A change a backend (Microsoft, the PBX) must learn, written with the change itself."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprises.id", ondelete="CASCADE"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    channel: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[OutboxStatus] = mapped_column(_enum(OutboxStatus), default=OutboxStatus.PENDING)
    sync_id: Mapped[int | None] = mapped_column(ForeignKey("sync_runs.id", ondelete="SET NULL"))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    __table_args__ = (
        Index("ix_outbox_due", "channel", "status", "next_attempt_at"),
        Index("ix_outbox_enterprise", "enterprise_id", "channel", "status"),
    )


class SyncRun(Base):
    """One "Sync Teams Users" run of an enterprise."""

    __tablename__ = "sync_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprises.id", ondelete="CASCADE"))
    status: Mapped[SyncStatus] = mapped_column(_enum(SyncStatus), default=SyncStatus.REQUESTED)
    is_first: Mapped[bool] = mapped_column(Boolean, default=False)
    is_automatic: Mapped[bool] = mapped_column(Boolean, default=False)
    requested_by: Mapped[str | None] = mapped_column(String(64))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expected_by: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    overdue_notified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The sync card the Global Admin pressed "Sync Teams Users" on, updated in place when the
    # run ends: its message id and conversation.
    card_activity_id: Mapped[str | None] = mapped_column(String(128))
    card_conversation_id: Mapped[str | None] = mapped_column(String(512))

    __table_args__ = (
        # At most one open run per enterprise: a second trigger finds the first.
        Index(
            "uq_sync_runs_one_open",
            "enterprise_id",
            unique=True,
            sqlite_where=text("status IN ('requested', 'running')"),
            postgresql_where=text("status IN ('requested', 'running')"),
        ),
    )


class AuditEntry(Base):
    """Who changed what, when, with the values before and after (secrets redacted)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    enterprise_id: Mapped[int | None] = mapped_column(
        ForeignKey("enterprises.id", ondelete="CASCADE")
    )
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(128))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (Index("ix_audit_log_enterprise_at", "enterprise_id", "at"),)


class ConversationRef(Base):
    """Where to reach an admin proactively: a stored Bot Framework conversation reference."""

    __tablename__ = "conversation_refs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    aad_object_id: Mapped[str] = mapped_column(String(64))
    conversation_id: Mapped[str] = mapped_column(String(512))
    is_personal: Mapped[bool] = mapped_column(Boolean, default=True)
    reference: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    __table_args__ = (UniqueConstraint("tenant_id", "aad_object_id", "conversation_id"),)


class ProcessedActivity(Base):
    """An activity id already handled, so a redelivery does not act twice."""

    __tablename__ = "processed_activities"

    activity_key: Mapped[str] = mapped_column(String(600), primary_key=True)
    response: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class HuntGroup(Base):
    """A hunt group of an enterprise: a call to it rings its members (an Asterisk queue)."""

    __tablename__ = "hunt_groups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprises.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    # How the PBX queue rings the members (Asterisk's queue strategies).
    strategy: Mapped[str] = mapped_column(String(16), default="ringall")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (UniqueConstraint("enterprise_id", "name"),)


class HuntGroupMember(Base):
    """A user's membership of a hunt group."""

    __tablename__ = "hunt_group_members"

    group_id: Mapped[int] = mapped_column(
        ForeignKey("hunt_groups.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    added_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (Index("ix_hunt_group_members_user", "user_id"),)


class SipCredential(Base):
    """A desk phone's SIP login, kept only as the digest hash the PBX checks (never the password)."""

    __tablename__ = "pbx_sip_credentials"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    username: Mapped[str] = mapped_column(String(40))
    realm: Mapped[str] = mapped_column(String(255))
    # md5("username:realm:password"), what Asterisk's ps_auths.md5_cred holds.
    md5_cred: Mapped[str] = mapped_column(String(32))
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class PbxLease(Base):
    """Which PBX worker may push an enterprise's changes right now, and until when."""

    __tablename__ = "pbx_leases"

    enterprise_id: Mapped[int] = mapped_column(
        ForeignKey("enterprises.id", ondelete="CASCADE"), primary_key=True
    )
    holder: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


class BuiltinLine(Base):
    """The built-in PBX configuration: one line (endpoint) per provisioned user."""

    __tablename__ = "pbx_lines"

    endpoint: Mapped[str] = mapped_column(String(255), primary_key=True)
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprises.id", ondelete="CASCADE"))
    # No foreign key: the line is the PBX's copy and outlives the user until the push removes it.
    user_id: Mapped[int] = mapped_column(Integer)
    caller_name: Mapped[str] = mapped_column(String(64))
    caller_number: Mapped[str] = mapped_column(String(20))
    caller_private: Mapped[bool] = mapped_column(Boolean, default=False)
    send_pai: Mapped[bool] = mapped_column(Boolean, default=False)
    pai_number: Mapped[str | None] = mapped_column(String(20))
    sip_username: Mapped[str | None] = mapped_column(String(40))
    sip_realm: Mapped[str | None] = mapped_column(String(255))
    sip_md5_cred: Mapped[str | None] = mapped_column(String(32))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    __table_args__ = (Index("ix_pbx_lines_enterprise", "enterprise_id"),)


class BuiltinRoute(Base):
    """The built-in PBX's routing: an extension or a direct number, and the line it rings."""

    __tablename__ = "pbx_routes"

    enterprise_id: Mapped[int] = mapped_column(
        ForeignKey("enterprises.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    key: Mapped[str] = mapped_column(String(40), primary_key=True)
    endpoint: Mapped[str] = mapped_column(String(255))

    __table_args__ = (Index("ix_pbx_routes_endpoint", "endpoint"),)


class BuiltinGroupMember(Base):
    """The built-in PBX's hunt-group membership: which line a hunt group rings."""

    __tablename__ = "pbx_line_groups"

    queue_name: Mapped[str] = mapped_column(String(80), primary_key=True)
    endpoint: Mapped[str] = mapped_column(String(255), primary_key=True)

    __table_args__ = (Index("ix_pbx_line_groups_endpoint", "endpoint"),)


class ProvisioningItem(Base):
    """One user's work in one sync run: a small state machine that survives restarts."""

    __tablename__ = "provisioning_items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sync_id: Mapped[int] = mapped_column(ForeignKey("sync_runs.id", ondelete="CASCADE"))
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprises.id", ondelete="CASCADE"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    action: Mapped[ProvisioningAction] = mapped_column(_enum(ProvisioningAction))
    # The outbox kinds folded into this item (user.create, user.update...).
    kinds: Mapped[list[str]] = mapped_column(JSON, default=list)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    step: Mapped[ProvisioningStep] = mapped_column(
        _enum(ProvisioningStep), default=ProvisioningStep.ENTRA_USER
    )
    status: Mapped[OutboxStatus] = mapped_column(_enum(OutboxStatus), default=OutboxStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    # Which worker holds the item, until when; an expired lease lets another take over.
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The Entra account was created by the sync, so the generated password is its password.
    entra_created: Mapped[bool] = mapped_column(Boolean, default=False)
    finished_by: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        UniqueConstraint("sync_id", "user_id"),
        Index("ix_provisioning_items_due", "enterprise_id", "status", "next_attempt_at"),
        Index("ix_provisioning_items_sync", "sync_id", "status"),
    )


class SyncNotice(Base):
    """A proactive message to send about a sync, written with the change that calls for it."""

    __tablename__ = "sync_notices"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The run it is about; a notice about the enterprise itself (its consent) has none.
    sync_id: Mapped[int | None] = mapped_column(ForeignKey("sync_runs.id", ondelete="CASCADE"))
    enterprise_id: Mapped[int | None] = mapped_column(
        ForeignKey("enterprises.id", ondelete="CASCADE")
    )
    # What a notice without a run says (who changed what), as plain values.
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    kind: Mapped[NoticeKind] = mapped_column(_enum(NoticeKind))
    status: Mapped[OutboxStatus] = mapped_column(_enum(OutboxStatus), default=OutboxStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Recipients already reached, so a retry does not message them twice.
    delivered_to: Mapped[list[str]] = mapped_column(JSON, default=list)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        UniqueConstraint("sync_id", "kind"),
        Index("ix_sync_notices_due", "status", "next_attempt_at"),
    )
