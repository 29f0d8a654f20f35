"""How database faults become SourceErrors: a bounded reason, a redacted message, never the DSN."""

from __future__ import annotations

import psycopg
from psycopg import errors as pg_errors

from dqmon.errors import SourceError
from dqmon.secrets import Redactor


def redact(text: str, secret: str) -> str:
    """`text` without the DSN, its password, or any credentials that look like a DSN's."""
    return Redactor([secret, _password_of(secret) or ""]).redact(text)


def _password_of(dsn: str) -> str | None:
    try:
        password = psycopg.conninfo.conninfo_to_dict(dsn).get("password")
    except psycopg.ProgrammingError:
        return None
    return str(password) if password else None


def connect_error(exc: Exception, dataset: str, secret: str) -> SourceError:
    return SourceError(
        f"cannot connect to the database of dataset {dataset!r}: {redact(str(exc), secret)}", code="connect"
    )


def statement_error(
    exc: psycopg.Error, *, dataset: str, statement: str, timeout_s: float, secret: str
) -> SourceError:
    """`statement` names what failed (sample, volume, freshness, ...), so a slow count_query is
    told apart from a slow sample."""
    what = f"the {statement} statement of dataset {dataset!r}"
    if isinstance(exc, pg_errors.QueryCanceled):
        return SourceError(
            f"{what} exceeded its statement timeout of {timeout_s:g}s and was canceled",
            code="statement_timeout",
        )
    if isinstance(exc, pg_errors.ReadOnlySqlTransaction):
        return SourceError(
            f"{what} tried to write in a read-only transaction: "
            f"{redact(exc.diag.message_primary or '', secret)}",
            code="read_only",
            retriable=False,
        )
    if isinstance(exc, psycopg.OperationalError):
        return SourceError(
            f"lost the database of dataset {dataset!r}: {redact(str(exc), secret)}", code="connect"
        )
    message = exc.diag.message_primary or str(exc)
    return SourceError(f"{what} failed: {redact(message, secret)}", code="query", retriable=False)
