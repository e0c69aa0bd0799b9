"""The one query of a signed-in request (the active token record and its user), compiled once per database.

Every request of a signed-in session reads its record together with its user (`store.load`). Building that
query through the ORM costs more Python time than the database takes to answer it (≈ 0.5 ms of compiling and
row handling against ≈ 0.3 ms for PostgreSQL to plan, run and return it), and only the primary key changes from
one request to the next. So Django's own compiler produces the SQL and the column converters once per database
alias, and each request runs that statement and turns the row into instances with `Model.from_db`, as the ORM
does. Anything unexpected in the compiled shape falls back to the plain queryset.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.core.signals import setting_changed
from django.db import connections, router
from django.db.models import QuerySet

from oauth_client.models import OAuthSession

Converter = Callable[[Any, Any, Any], Any]


@dataclass(frozen=True)
class _Compiled:
    sql: str
    converters: tuple[tuple[int, tuple[Converter, ...], Any], ...]  # (position, converters, expression)
    record_slice: slice
    user_slice: slice
    record_fields: tuple[str, ...]
    user_fields: tuple[str, ...]


_compiled: dict[str, _Compiled | None] = {}
_lock = threading.Lock()


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
    converters = compiler.get_converters(columns)
    return _Compiled(
        sql=sql,
        converters=tuple((pos, tuple(funcs), expr) for pos, (funcs, expr) in converters.items()),
        record_slice=record_slice,
        user_slice=user_slice,
        record_fields=tuple(col.target.attname for col in columns[record_slice]),
        user_fields=tuple(col.target.attname for col in columns[user_slice]),
    )


def compiled(using: str) -> _Compiled | None:
    if using not in _compiled:
        with _lock:
            if using not in _compiled:
                _compiled[using] = _compile(using)
    return _compiled[using]


def _reset(*, setting: str, **kwargs: Any) -> None:
    if setting in ("DATABASES", "AUTH_USER_MODEL"):
        _compiled.clear()


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
    for pos, funcs, expression in statement.converters:
        value = values[pos]
        for convert in funcs:
            value = convert(value, expression, connection)
        values[pos] = value
    record = OAuthSession.from_db(using, statement.record_fields, values[statement.record_slice])
    user_field = OAuthSession._meta.get_field("user")
    user = user_field.related_model.from_db(using, statement.user_fields, values[statement.user_slice])
    user_field.set_cached_value(record, user)
    return record
