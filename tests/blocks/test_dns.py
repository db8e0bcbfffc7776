"""DnsUpdateCredentials: the TSIG key is checked on load and never shown."""

from __future__ import annotations

import base64

import pytest
from pydantic import SecretStr
from pydantic import ValidationError as PydanticValidationError

from blocks.dns import DnsUpdateCredentials

SECRET = base64.b64encode(b"k" * 32).decode()


def test_updater_and_nameserver() -> None:
    creds = DnsUpdateCredentials(
        server="10.0.0.2",
        port=5353,
        zone="example.com.",
        key_name="ddns",
        algorithm="HMAC-SHA256",
        secret=SecretStr(SECRET),
    )
    assert SECRET not in repr(creds)
    u = creds.updater()
    assert (u.zone, u.algorithm, u.secret) == ("example.com", "hmac-sha256", SECRET)
    assert SECRET not in repr(u)
    assert str(creds.nameserver()) == "10.0.0.2:5353"


@pytest.mark.parametrize(
    ("over", "words"),
    [
        ({"secret": SecretStr("not base64!")}, "not base64"),
        ({"secret": SecretStr(base64.b64encode(b"short").decode())}, "shorter than 128"),
        ({"algorithm": "rot13"}, "algorithm must be"),
    ],
)
def test_invalid(over: dict[str, object], words: str) -> None:
    data: dict[str, object] = {
        "server": "10.0.0.2",
        "zone": "example.com",
        "key_name": "ddns",
        "secret": SecretStr(SECRET),
    }
    data.update(over)
    with pytest.raises(PydanticValidationError, match=words) as exc:
        DnsUpdateCredentials(**data)  # type: ignore[arg-type]
    assert "not base64!" not in str(exc.value)
