"""The tables of a bulk import: the import, and each row's plan and fate, so an interrupted
apply resumes where it stopped and applies every row exactly once."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from services.bulk.values import ImportStatus, RowAction, RowStatus
from services.models import Base, UTCDateTime, _enum, utcnow


class BulkImport(Base):
    """One applied bulk file of an enterprise."""

    __tablename__ = "bulk_imports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    enterprise_id: Mapped[int] = mapped_column(ForeignKey("enterprises.id", ondelete="CASCADE"))
    # The admin who applied it (object id, name, role, enterprise): the rows act for them.
    actor: Mapped[dict[str, Any]] = mapped_column(JSON)
    file_name: Mapped[str] = mapped_column(String(255), default="")
    token: Mapped[str] = mapped_column(String(64))
    status: Mapped[ImportStatus] = mapped_column(_enum(ImportStatus), default=ImportStatus.APPLYING)
    total_rows: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        Index("ix_bulk_imports_enterprise_status", "enterprise_id", "status"),
        # One import per preview: a second press of Apply finds the first.
        UniqueConstraint("enterprise_id", "token"),
    )


class BulkImportRow(Base):
    """One row of an applied file: what it plans, and what became of it."""

    __tablename__ = "bulk_import_rows"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    import_id: Mapped[int] = mapped_column(ForeignKey("bulk_imports.id", ondelete="CASCADE"))
    # The order rows are applied in (removals first, automatic allocations last).
    seq: Mapped[int] = mapped_column(Integer)
    line: Mapped[int] = mapped_column(Integer)
    email: Mapped[str] = mapped_column(String(254))
    action: Mapped[RowAction] = mapped_column(_enum(RowAction))
    status: Mapped[RowStatus] = mapped_column(_enum(RowStatus), default=RowStatus.PENDING)
    plan: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    reason: Mapped[str | None] = mapped_column(Text)
    # What the row left the user with, for the result file (no foreign key: a removal's user
    # is gone).
    user_id: Mapped[int | None] = mapped_column(Integer)
    number: Mapped[str | None] = mapped_column(String(20))
    extension: Mapped[int | None] = mapped_column(Integer)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        UniqueConstraint("import_id", "line"),
        Index("ix_bulk_import_rows_todo", "import_id", "status", "seq"),
    )
