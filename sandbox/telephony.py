"""Teams telephone number orders: they run asynchronously and finish after a delay."""

from __future__ import annotations

import re
import uuid

from sandbox.models import NumberAssignment, NumberOperation, Tenant, User, opaque_id, utc_now

NUMBER_TYPES = ("directRouting", "callingPlan", "operatorConnect")
ASSIGNMENT_CATEGORIES = ("primary", "private", "alternate")
_NUMBER = re.compile(r"^\+?(\d{4,15})(;ext=\d{1,10})?$")
# Share of an order's delay spent as `notStarted` before it shows `running`.
_QUEUED_SHARE = 0.25


def normalize_number(text: str) -> str | None:
    """Return the number with Graph's `+` prefix, or None when it is not a telephone number."""
    match = _NUMBER.match(text.strip()) if text else None
    if match is None:
        return None
    return "+" + match.group(1) + (match.group(2) or "")


def schedule(
    tenant: Tenant,
    *,
    kind: str,
    telephone_number: str,
    number_type: str,
    now: float,
    delay: float,
    assignment_target_id: str | None = None,
    assignment_category: str = "primary",
    location_id: str | None = None,
) -> NumberOperation:
    """Queue an assign or unassign order; its outcome is decided when it finishes."""
    label = "Assignment" if kind == "assign" else "Unassignment"
    operation = NumberOperation(
        id=opaque_id(f"{label}|{uuid.uuid4()}"),
        kind=kind,
        telephone_number=telephone_number,
        number_type=number_type,
        created=utc_now(),
        started_at=now,
        due_at=now + max(delay, 0.0),
        assignment_target_id=assignment_target_id,
        assignment_category=assignment_category,
        location_id=location_id,
    )
    tenant.operations[operation.id] = operation
    tenant.pending_operations.append(operation.id)
    return operation


def advance(tenant: Tenant, now: float) -> None:
    """Move every pending order forward to `now`, finishing them in the order they were placed."""
    still_pending: list[str] = []
    for operation_id in tenant.pending_operations:
        operation = tenant.operations[operation_id]
        if now >= operation.due_at:
            _finish(tenant, operation)
            continue
        queued_until = (
            operation.started_at + (operation.due_at - operation.started_at) * _QUEUED_SHARE
        )
        if now >= queued_until:
            operation.status = operation.number_status = "running"
        still_pending.append(operation_id)
    tenant.pending_operations = still_pending


def _finish(tenant: Tenant, operation: NumberOperation) -> None:
    if operation.kind == "assign":
        _finish_assign(tenant, operation)
    else:
        _finish_unassign(tenant, operation)


def _fail(operation: NumberOperation, detail: str) -> None:
    operation.status = operation.number_status = "failed"
    operation.status_detail = detail


def _has_phone_licence(tenant: Tenant, user: User) -> bool:
    return any(
        "PhoneSystem" in tenant.skus[sku_id].feature_types
        for sku_id in user.licenses
        if sku_id in tenant.skus
    )


def _finish_assign(tenant: Tenant, operation: NumberOperation) -> None:
    number = operation.telephone_number
    target_id = operation.assignment_target_id or ""
    user = tenant.users.get(target_id)
    existing = tenant.numbers.get(number)
    if user is None:
        _fail(operation, f"The assignment target '{target_id}' was not found in the tenant.")
        return
    if operation.number_type != "directRouting" and existing is None:
        _fail(operation, f"The telephone number {number} was not found in the tenant's inventory.")
        return
    if existing is not None and existing.number_type != operation.number_type:
        _fail(operation, f"The telephone number {number} is not a {operation.number_type} number.")
        return
    if not _has_phone_licence(tenant, user):
        _fail(operation, f"The user {user.upn} has no licence that includes Teams Phone.")
        return
    if existing is not None and existing.assignment_target_id not in (None, target_id):
        _fail(operation, f"The telephone number {number} is already assigned to another user.")
        return
    if (
        existing is not None
        and existing.assignment_target_id == target_id
        and existing.assignment_category == operation.assignment_category
    ):
        operation.status = "skipped"
        operation.number_status = "succeeded"
        operation.status_detail = "The telephone number is already assigned to this user."
        return
    if operation.assignment_category == "primary":
        for held in tenant.numbers_of(target_id):
            if held.telephone_number != number and held.assignment_category == "primary":
                _release(tenant, held)
    record = existing or NumberAssignment(
        tenant_id=tenant.id,
        telephone_number=number,
        number_type=operation.number_type,
        assignment_target_id=None,
        assignment_category=None,
    )
    record.assignment_target_id = target_id
    record.assignment_category = operation.assignment_category
    if operation.location_id is not None:
        record.location_id = operation.location_id
    tenant.numbers[number] = record
    user.enterprise_voice_enabled = True
    user.teams_modified = utc_now()
    operation.status = operation.number_status = "succeeded"


def _finish_unassign(tenant: Tenant, operation: NumberOperation) -> None:
    number = operation.telephone_number
    record = tenant.numbers.get(number)
    if record is None or record.assignment_target_id is None:
        _fail(operation, f"The telephone number {number} is not assigned.")
        return
    user = tenant.users.get(record.assignment_target_id)
    _release(tenant, record)
    if user is not None:
        user.teams_modified = utc_now()
    operation.assignment_target_id = operation.assignment_target_id or (user.id if user else None)
    operation.status = operation.number_status = "succeeded"


def _release(tenant: Tenant, record: NumberAssignment) -> None:
    # Direct Routing numbers live on the customer's PBX: once free, Teams forgets them.
    if record.number_type == "directRouting":
        tenant.numbers.pop(record.telephone_number, None)
    else:
        record.assignment_target_id = None
        record.assignment_category = None


def release_user_numbers(tenant: Tenant, user_id: str) -> None:
    """Free every number a deleted user held."""
    for record in tenant.numbers_of(user_id):
        _release(tenant, record)
