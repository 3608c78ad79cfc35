"""Wake the PBX pusher as soon as a transaction that queued PBX work has committed.

Kept free of other service imports: `services.journal` uses it when it queues a change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

Listener = Callable[[], None]

_INFO_KEY = "switchboard.pbx_wake"
_listeners: WeakKeyDictionary[Engine, list[Listener]] = WeakKeyDictionary()


def subscribe(engine: Engine, listener: Listener) -> Callable[[], None]:
    """Call `listener` after every commit on `engine` that queued PBX work; returns the undo."""
    _listeners.setdefault(engine, []).append(listener)

    def unsubscribe() -> None:
        listeners = _listeners.get(engine, [])
        if listener in listeners:
            listeners.remove(listener)

    return unsubscribe


def wake_after_commit(session: AsyncSession) -> None:
    """Ask for the PBX pusher to be woken when this session's transaction commits."""
    sync_session = session.sync_session
    if sync_session.info.get(_INFO_KEY):
        return
    sync_session.info[_INFO_KEY] = True
    event.listen(sync_session, "after_commit", _after_commit)
    event.listen(sync_session, "after_rollback", _forget)


def _forget(session: Session, *_: Any) -> None:
    session.info.pop(_INFO_KEY, None)


def _after_commit(session: Session) -> None:
    if not session.info.pop(_INFO_KEY, False):
        return
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    for listener in list(_listeners.get(engine, [])):
        listener()
