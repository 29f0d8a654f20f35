"""Redaction: the one way dqmon removes secrets from text (logs, errors, config problems).

Configured secret values are replaced, and so are the credentials of any URL-like DSN
(`scheme://user:password@`) and a libpq keyword DSN's `password=...`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from pydantic import SecretStr

from dqmon.errors import NotifyError

REDACTED = "***"
# the credentials (user, password) of any URL-like DSN (postgresql://u:p@h, https://u:p@h)
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.\-]*://)[^@/\s]*@", re.IGNORECASE)
# a libpq keyword DSN's password (host=h password=p, password='p w')
_KEYWORD_PASSWORD = re.compile(r"(password\s*=\s*)('[^']*'|\S+)", re.IGNORECASE)
_MIN_SECRET_LENGTH = 4  # shorter "secrets" would redact ordinary words
_SECRET_KEY = re.compile(r"password|secret|token|key", re.IGNORECASE)
# keys that contain "key" but hold no secret (file locations and public material)
_NOT_SECRET = {"ssl.key.location", "ssl.keystore.location", "ssl.certificate.location", "ssl.ca.location"}


def is_secret_key(key: str) -> bool:
    """Whether a client setting (librdkafka `sasl.password`, ...) holds a secret by its name."""
    return key not in _NOT_SECRET and bool(_SECRET_KEY.search(key))


class Redactor:
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: list[str] = []
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        for secret in secrets:
            if secret and len(secret) >= _MIN_SECRET_LENGTH and secret not in self._secrets:
                self._secrets.append(secret)
        # longest first so a secret containing another is replaced whole
        self._secrets.sort(key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        text = _URL_CREDENTIALS.sub(rf"\g<scheme>{REDACTED}@", text)
        return _KEYWORD_PASSWORD.sub(rf"\g<1>{REDACTED}", text)


def read_secret(value: SecretStr | None, file: Path | None) -> str | None:
    """A secret from the environment (wins) or from a mounted file; None when neither has one."""
    if value is not None and value.get_secret_value().strip():
        return value.get_secret_value().strip()
    if file is None:
        return None
    try:
        text = file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        # the path is configuration, not a secret; the content never reaches the message
        raise NotifyError(f"cannot read secret file {file}: {exc.strerror}", permanent=True) from None
    return text or None
