"""Redaction: the one way dqmon removes secrets from text (logs, errors, config problems).

Configured secret values are replaced, and so are the credentials of any URL-like DSN
(`scheme://user:password@`) and a libpq keyword DSN's `password=...`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

REDACTED = "***"
# the credentials (user, password) of any URL-like DSN (postgresql://u:p@h, https://u:p@h)
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.\-]*://)[^@/\s]*@", re.IGNORECASE)
# a libpq keyword DSN's password (host=h password=p, password='p w')
_KEYWORD_PASSWORD = re.compile(r"(password\s*=\s*)('[^']*'|\S+)", re.IGNORECASE)
_MIN_SECRET_LENGTH = 4  # shorter "secrets" would redact ordinary words


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
