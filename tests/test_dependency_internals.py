"""The private internals of our dependencies that Switchboard relies on, one test per patch.

Each test names the patch and says what to do when it fails: a new release of the library
changed what the patch stands on. pyproject.toml bounds these libraries to the releases the
patches were written for, and the lock file pins the exact ones; these tests catch a change
when someone moves the bounds.
"""

from __future__ import annotations

import inspect
from typing import Any

import aiosqlite
import pytest
from botframework.connector.auth import JwtTokenExtractor
from msrest.universal_http.requests import ClientRetryPolicy
from sqlalchemy.dialects.sqlite import aiosqlite as sqlalchemy_aiosqlite


def _broken(patch: str, what: str) -> str:
    return (
        f"{patch} relies on {what}, which this release no longer has: adapt {patch} to the "
        "new release (or keep the bound in pyproject.toml) before upgrading."
    )


def test_sqlite_one_trip_cursor_still_fits_sqlalchemys_aiosqlite_adapter() -> None:
    """services/sqlite.py: _OneTripCursor and one_trip_dbapi subclass SQLAlchemy's adapter."""
    patch = "services/sqlite.py (one trip per statement)"
    connection = sqlalchemy_aiosqlite.AsyncAdapt_aiosqlite_connection
    cursor = sqlalchemy_aiosqlite.AsyncAdapt_aiosqlite_cursor
    for name in ("_handle_exception",):
        assert hasattr(connection, name), _broken(patch, f"AsyncAdapt_aiosqlite_connection.{name}")
    init = inspect.signature(connection.__init__)
    assert list(init.parameters)[:3] == ["self", "dbapi", "connection"], _broken(
        patch, "AsyncAdapt_aiosqlite_connection(dbapi, connection)"
    )
    source = "".join(
        inspect.getsource(klass)
        for klass in connection.__mro__
        if klass.__module__.startswith("sqlalchemy.")
    )
    for attribute in ("_connection", "_execute_mutex"):
        assert attribute in source, _broken(patch, f"the adapter's {attribute}")
    for name in ("description", "rowcount", "lastrowid", "execute", "executemany"):
        assert hasattr(cursor, name), _broken(patch, f"AsyncAdapt_aiosqlite_cursor.{name}")
    assert hasattr(sqlalchemy_aiosqlite, "AsyncAdapt_aiosqlite_dbapi"), _broken(
        patch, "AsyncAdapt_aiosqlite_dbapi"
    )


def test_sqlite_one_trip_cursor_still_reaches_aiosqlites_thread() -> None:
    """services/sqlite.py runs a whole statement in aiosqlite's thread through its _execute."""
    patch = "services/sqlite.py (one trip per statement)"
    assert inspect.iscoroutinefunction(aiosqlite.Connection._execute), _broken(
        patch, "aiosqlite.Connection._execute (a coroutine running a function in its thread)"
    )
    parameters = list(inspect.signature(aiosqlite.Connection._execute).parameters)
    assert parameters[:2] == ["self", "fn"], _broken(patch, "Connection._execute(fn, *args)")
    assert "_conn" in inspect.getsource(aiosqlite.Connection), _broken(
        patch, "aiosqlite.Connection._conn (the sqlite3 connection)"
    )


def test_threaded_signing_keys_still_fit_botbuilders_metadata_cache() -> None:
    """bot/auth.py: _ThreadedOpenIdMetadata replaces botbuilder's signing-key fetcher."""
    from botframework.connector.auth import jwt_token_extractor

    patch = "bot/auth.py (_ThreadedOpenIdMetadata, use_nonblocking_signing_keys)"
    assert isinstance(JwtTokenExtractor.metadataCache, dict), _broken(
        patch, "JwtTokenExtractor.metadataCache (a class-level dict keyed by URL)"
    )
    metadata = jwt_token_extractor._OpenIdMetadata
    for name in ("_find", "_refresh", "get", "url", "keys", "last_updated"):
        assert name in inspect.getsource(metadata), _broken(patch, f"_OpenIdMetadata.{name}")
    assert hasattr(jwt_token_extractor, "_OpenIdConfig"), _broken(patch, "_OpenIdConfig")


def test_app_id_lookup_still_on_botbuilders_builtin_authentication() -> None:
    """bot/auth.py reads the app id of a token with botbuilder's private helper."""
    from botframework.connector.auth import _built_in_bot_framework_authentication as builtin

    patch = "bot/auth.py (app id of a caller)"
    helper = getattr(builtin._BuiltinBotFrameworkAuthentication, "get_app_id", None)
    assert callable(helper), _broken(patch, "_BuiltinBotFrameworkAuthentication.get_app_id")


def test_token_check_before_the_body_still_reaches_botbuilders_validator(
    bot_settings: Any,
) -> None:
    """bot/auth.py check_token validates the token before the body with the validator of
    botbuilder's parameterized authentication (the path Switchboard's configuration takes);
    without it the early check would silently do nothing."""
    from bot.auth import create_bot_framework_authentication

    patch = "bot/auth.py (check_token)"
    authentication = create_bot_framework_authentication(bot_settings)
    inner = getattr(authentication, "_inner", None)
    assert inner is not None, _broken(patch, "ConfigurationBotFrameworkAuthentication._inner")
    validator = getattr(inner, "_jwt_token_validation_validate_auth_header", None)
    assert inspect.iscoroutinefunction(validator), _broken(
        patch, f"{type(inner).__name__}._jwt_token_validation_validate_auth_header"
    )
    parameters = list(inspect.signature(validator).parameters)
    assert parameters[:3] == ["auth_header", "channel_id", "service_url"], _broken(
        patch, "_jwt_token_validation_validate_auth_header(auth_header, channel_id, service_url)"
    )


def test_msrest_retry_policy_still_has_safe_codes() -> None:
    """bot/adapter.py makes msrest's ClientRetryPolicy.safe_codes a frozenset."""
    patch = "bot/adapter.py (_cheap_retry_policies)"
    codes = getattr(ClientRetryPolicy, "safe_codes", None)
    assert codes is not None, _broken(patch, "ClientRetryPolicy.safe_codes")
    assert 200 in codes and 500 not in codes, _broken(patch, "safe_codes as the codes not retried")


@pytest.mark.parametrize(
    ("distribution", "bound"),
    [("SQLAlchemy", "2.2"), ("aiosqlite", "0.23"), ("msrest", "0.8"), ("botbuilder-core", "4.18")],
)
def test_patched_libraries_stay_below_their_bounds(distribution: str, bound: str) -> None:
    """The installed releases are the ones the patches above were written against."""
    from importlib.metadata import version

    installed = tuple(int(part) for part in version(distribution).split(".")[:2])
    limit = tuple(int(part) for part in bound.split("."))
    assert installed < limit, (
        f"{distribution} {version(distribution)} is past the bound {bound} in pyproject.toml: "
        "run the tests above against it and move the bound only when they pass."
    )
