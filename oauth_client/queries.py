"""The one query of a signed-in request (the active token record and its user), compiled once per database.

Every request of a signed-in session reads its record together with its user (`store.load`). Building that
query through the ORM costs more Python time than the database takes to answer it (≈ 0.5 ms of compiling and
row handling against ≈ 0.3 ms for PostgreSQL to plan, run and return it), and only the primary key changes from
one request to the next. So Django's own compiler produces the SQL and the column converters once per database
alias, and each request runs that statement and turns the row into instances with `Model.from_db`, as the ORM
does. Anything unexpected in the compiled shape falls back to the plain queryset. Token columns are left sealed
(`crypto.Sealed`): decrypted when a view first reads them, not on every request.
"""

from __future__ import annotations

import threading
import uuid
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.core.signals import setting_changed
from django.db import connections, router
from django.db.models import QuerySet

from oauth_client import crypto
from oauth_client.models import OAuthSession

Converter = Callable[[Any, Any, Any], Any]
Converters = tuple[tuple[int, tuple[Converter, ...], Any], ...]  # (position, converters, column expression)


@dataclass(frozen=True)
class _Compiled:
    sql: str
    columns: tuple[Any, ...]  # the selected column expressions, in order
    record_slice: slice
    user_slice: slice
    record_fields: tuple[str, ...]
    user_fields: tuple[str, ...]


_MISSING = object()
_compiled: dict[str, _Compiled | None] = {}
_lock = threading.Lock()
# Converters are bound to a connection object (one per thread and alias; SQLite's datetime converter reads its
# time zone), so they are kept per connection object, and forgotten with it.
_converters: weakref.WeakKeyDictionary[Any, Converters] = weakref.WeakKeyDictionary()


def active_records(record_id: Any) -> QuerySet[OAuthSession]:
    """The queryset this module compiles: the record if not ended, with its user, no ORDER BY, at most one."""
    return OAuthSession.objects.select_related("user").filter(pk=record_id, ended_at__isnull=True).order_by()[:1]


def _contiguous(positions: Sequence[int]) -> slice | None:
    if not positions or list(positions) != list(range(positions[0], positions[0] + len(positions))):
        return None
    return slice(positions[0], positions[0] + len(positions))


def _compile(using: str) -> _Compiled | None:
    connection = connections[using]
    sentinel = uuid.UUID(int=0)
    compiler = active_records(sentinel).query.get_compiler(using)
    sql, params = compiler.as_sql()
    # The primary key must be the statement's only parameter, or the statement cannot be reused as is.
    if list(params) != [OAuthSession._meta.pk.get_db_prep_value(sentinel, connection)]:
        return None
    info = compiler.klass_info
    related = info["related_klass_infos"] if info else []
    if not info or info["model"] is not OAuthSession or len(related) != 1:
        return None
    record_slice = _contiguous(info["select_fields"])
    user_slice = _contiguous(related[0]["select_fields"])
    if record_slice is None or user_slice is None:
        return None
    columns = [col for col, _sql, _alias in compiler.select]
    return _Compiled(
        sql=sql,
        columns=tuple(columns),
        record_slice=record_slice,
        user_slice=user_slice,
        record_fields=tuple(col.target.attname for col in columns[record_slice]),
        user_fields=tuple(col.target.attname for col in columns[user_slice]),
    )


def compiled(using: str) -> _Compiled | None:
    statement = _compiled.get(using, _MISSING)
    if statement is _MISSING:
        with _lock:
            statement = _compiled[using] = _compile(using)
    return statement  # type: ignore[return-value]


def converters(statement: _Compiled, connection: Any) -> Converters:
    """What `SQLCompiler.get_converters` would give for these columns, except that token columns stay sealed."""
    cached = _converters.get(connection)
    if cached is None:
        found = []
        for pos, column in enumerate(statement.columns):
            # A token column's only field converter is the decrypting from_db_value: seal instead.
            sealed = isinstance(column.target, crypto.EncryptedTextField)
            funcs = [
                *connection.ops.get_db_converters(column),
                *([crypto.seal] if sealed else column.get_db_converters(connection)),
            ]
            if funcs:
                found.append((pos, tuple(funcs), column))
        cached = _converters[connection] = tuple(found)
    return cached


def _reset(*, setting: str, **kwargs: Any) -> None:
    if setting in ("DATABASES", "USE_TZ", "TIME_ZONE"):
        _compiled.clear()
        _converters.clear()


setting_changed.connect(_reset)


def active_record(record_id: Any) -> OAuthSession | None:
    """The record `record_id` with its user attached, or None if it does not exist, has ended or the id is
    malformed. One query."""
    using = router.db_for_read(OAuthSession)
    statement = compiled(using)
    if statement is None:
        try:
            return next(iter(active_records(record_id)), None)
        except ValidationError:
            return None
    connection = connections[using]
    try:
        param = OAuthSession._meta.pk.get_db_prep_value(record_id, connection)
    except ValidationError:
        return None
    with connection.cursor() as cursor:
        cursor.execute(statement.sql, [param])
        row = cursor.fetchone()
    if row is None:
        return None
    values = list(row)
    for pos, funcs, column in converters(statement, connection):
        value = values[pos]
        for convert in funcs:
            value = convert(value, column, connection)
        values[pos] = value
    record = OAuthSession.from_db(using, statement.record_fields, values[statement.record_slice])
    user_field = OAuthSession._meta.get_field("user")
    user = user_field.related_model.from_db(using, statement.user_fields, values[statement.user_slice])
    user_field.set_cached_value(record, user)
    return record
