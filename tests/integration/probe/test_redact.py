"""Broker URLs lose their credentials before anyone sees them."""

from __future__ import annotations

import pytest

from jobpulse.probe import Scrubber, redact_url
from jobpulse.probe._redact import secrets_of


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("amqp://guest:guest@rabbit:5672//", "amqp://***@rabbit:5672//"),
        ("redis://:pw@r1:6379/0", "redis://***@r1:6379/0"),
        ("redis://default:pw@r1:6379/0", "redis://***@r1:6379/0"),
        ("redis://s3cret@r1", "redis://***@r1"),  # the user part alone may be the secret
        ("rediss://u:p%40ss@r1:6380/2", "rediss://***@r1:6380/2"),
        ("redis://:pa/ss@r1:6379/0", "redis://***@r1:6379/0"),  # unescaped '/' in a password
        ("redis://:p@ss@r1:6379/0", "redis://***@r1:6379/0"),  # unescaped '@'
        ("redis://:pa#ss@r1/0", "redis://***@r1/0"),  # unescaped '#'
        ("redis://:pa?ss@r1/0", "redis://***@r1/0"),  # unescaped '?'
        ("redis://r1:6379/3", "redis://r1:6379/3"),
        ("unix:///tmp/r.sock?db=3&password=x", "unix:///tmp/r.sock?db=3&password=***"),
        ("redis://r1/0?ssl_keyfile=/k&db=1", "redis://r1/0?ssl_keyfile=***&db=1"),
        ("amqp://u:p@h1//;amqp://u:p@h2//", "amqp://***@h1//;amqp://***@h2//"),
        ("amqp://u:p@h:1/v#fragment", "amqp://***@h:1/v"),
        ("", ""),
        (None, ""),
    ],
)
def test_redact_url(url: str | None, expected: str) -> None:
    assert redact_url(url) == expected


def test_secrets_of_and_scrubber() -> None:
    url = "redis://user:p%40ss-word@h:1/0?token=tkn-123"
    assert set(secrets_of(url)) == {"p%40ss-word", "p@ss-word", "tkn-123"}
    scrub = Scrubber([url, None, "amqp://guest:guest@h//"])
    text = f"failed {url}: p@ss-word rejected, token tkn-123, guest"
    out = scrub(text)
    for secret in ("p@ss-word", "p%40ss-word", "tkn-123", "guest"):
        assert secret not in out
    assert "redis://***@h:1/0?token=***" in out
    scrub.add_secret("extra-secret")
    assert scrub("an extra-secret here") == "an *** here"


def test_redact_never_raises() -> None:
    class Weird:
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert redact_url(Weird()) == "<redacted url>"  # type: ignore[arg-type]
    assert Scrubber()(Weird()) == "<unprintable>"
