"""Broker URLs without credentials, for logs, output and anything else a person reads.

The contract says broker URLs are recorded without credentials. Two helpers:

* :func:`redact_url` masks the whole user-info part (``redis://***@host:6379/0``)
  and the values of query parameters that look like secrets. The whole user
  info goes, not only the password: some URL forms put the secret in the user
  part (``redis://s3cret@host``).
* :class:`Scrubber` removes known secrets from free text (exception messages
  of broker clients), so an error line can say what went wrong without saying
  the password.

Neither ever raises: a URL that cannot be parsed comes back as a placeholder.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import parse_qsl, unquote, urlencode

MASK = "***"
#: query parameters whose values are masked (substring match, case-insensitive)
SECRET_PARAMS = ("pass", "pwd", "secret", "token", "auth", "key", "credential", "sasl")
#: kombu and redis sentinel accept several URLs joined with ';'
_SEPARATOR = ";"


def _secret_param(name: str) -> bool:
    lowered = name.lower()
    return any(part in lowered for part in SECRET_PARAMS)


def split_url(url: str) -> tuple[str, str | None, str, str]:
    """(``scheme://``, user info or None, host and path, query) of one URL.

    The user info runs to the *last* ``@``: a password with an unescaped ``/``,
    ``?``, ``#`` or ``@`` in it (not valid, but seen) still counts as user info.
    Masking too much beats leaking. The fragment is dropped.
    """
    url = url.strip()
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    else:
        scheme += sep
    userinfo: str | None = None
    if "@" in rest:
        userinfo, rest = rest.rsplit("@", 1)
    rest = rest.split("#", 1)[0]
    rest, _qsep, query = rest.partition("?")
    return scheme, userinfo, rest, query


def _redact_one(url: str) -> str:
    scheme, userinfo, hostpath, query = split_url(url)
    out = scheme + (MASK + "@" if userinfo is not None else "") + hostpath
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        out += "?" + urlencode([(k, MASK if _secret_param(k) else v) for k, v in pairs], safe="*/")
    return out


def redact_url(url: str | None) -> str:
    """``url`` with its user info and secret-looking query values masked.

    >>> redact_url("amqp://guest:guest@rabbit:5672//")
    'amqp://***@rabbit:5672//'
    >>> redact_url("redis://:pw@r1:6379/0?password=pw&db=0")
    'redis://***@r1:6379/0?password=***&db=0'
    """
    if not url:
        return ""
    try:
        return _SEPARATOR.join(_redact_one(part) for part in str(url).split(_SEPARATOR))
    except Exception:  # noqa: BLE001 - never raise, never leak
        return "<redacted url>"


def secrets_of(url: str | None) -> list[str]:
    """The secret strings a URL carries (passwords, user-only user info, secret query
    values), raw and percent-decoded, longest first."""
    found: set[str] = set()
    for part in (url or "").split(_SEPARATOR):
        _scheme, userinfo, _hostpath, query = split_url(part)
        if userinfo:
            user, sep, password = userinfo.partition(":")
            # a user part alone may be the secret (``redis://s3cret@host``)
            found.add(password if sep else user)
        for key, value in parse_qsl(query, keep_blank_values=False):
            if _secret_param(key):
                found.add(value)
    found |= {unquote(s) for s in found}
    return sorted((s for s in found if s), key=len, reverse=True)


class Scrubber:
    """Removes the raw URLs and their secrets from free text."""

    def __init__(self, urls: Iterable[str | None] = ()) -> None:
        self._urls: list[tuple[str, str]] = []
        self._secrets: list[str] = []
        for url in urls:
            self.add(url)

    def add(self, url: str | None) -> None:
        if not url:
            return
        self._urls.append((url, redact_url(url)))
        self.add_secret(*secrets_of(url))

    def add_secret(self, *secrets: str | None) -> None:
        found = set(self._secrets) | {s for s in secrets if s}
        self._secrets = sorted(found, key=len, reverse=True)

    def __call__(self, text: object) -> str:
        try:
            out = str(text)
        except Exception:  # noqa: BLE001
            return "<unprintable>"
        for raw, redacted in self._urls:
            out = out.replace(raw, redacted)
        for secret in self._secrets:
            out = out.replace(secret, MASK)
        return out
