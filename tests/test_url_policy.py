"""The URL policy on its own: normalisation, the syntactic URL rules and the address rule.

None of these tests touches the network. The fetcher tests check that the same rules are
applied to every URL and redirect hop before anything is contacted.
"""

from __future__ import annotations

import ipaddress

import pytest

from app.common.exceptions import ValidationException
from app.services.image_fetch.url_policy import check_url, is_public_address, normalize_url
from tests.image_fetch_support import NON_PUBLIC_ADDRESSES, NOT_VALID, PUBLIC_IP

# --- normalisation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "normalized"),
    [
        (
            ' http://127.0.0.1:8000/x.png?a="><svg onload=alert(1)>#frag ',
            "http://127.0.0.1:8000/x.png?a=%22%3E%3Csvg+onload=alert(1)%3E",
        ),
        ("HTTP://Images.Example.COM:80/a b.png#top", "http://images.example.com/a%20b.png"),
        ("https://images.test:443/x", "https://images.test/x"),
        ("https://images.test:8443/x", "https://images.test:8443/x"),
        ("https://Bücher.test/ä.png?ü=1", "https://xn--bcher-kva.test/%C3%A4.png?%C3%BC=1"),
        ("http://[::FFFF:127.0.0.1]/x", "http://[::ffff:7f00:1]/x"),
        ("http://images.test/a/../b/./c.png", "http://images.test/b/c.png"),
        ("http://images.test/p?a=%26&b=%3D&c=%2B&d=%23&e=a+b", None),
        ("http://images.test/p?sig=abc%2Fdef&x=1&x=2", "http://images.test/p?sig=abc/def&x=1&x=2"),
        ("http://images.test/p?100%&bad=%zz", "http://images.test/p?100%25&bad=%25zz"),
        ("http://images.test", None),
    ],
)
def test_normalize_url(given: str, normalized: str | None) -> None:
    """Canonical and idempotent; the query's separators and `+` keep their meaning."""
    expected = given if normalized is None else normalized

    assert normalize_url(given) == expected
    assert normalize_url(expected) == expected


@pytest.mark.parametrize(
    "url",
    ["http://ima ges.test/", 'http://ima"ges.test/', "http://ima<ges.test/", "http://a%41.test/"],
)
def test_normalize_url_refuses_hosts_with_characters_no_host_name_has(url: str) -> None:
    with pytest.raises(ValidationException) as caught:
        normalize_url(url)

    assert caught.value.message == NOT_VALID


# --- the address rule --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        PUBLIC_IP,
        "8.8.8.8",
        "1.1.1.1",
        "2606:4700:4700::1111",
        "2a00:1450:4001:82b::200e",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
        "2002:808:808::1",
    ],
)
def test_is_public_address_public(address: str) -> None:
    assert is_public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", NON_PUBLIC_ADDRESSES + ["fe80::1%eth0"])
def test_is_public_address_not_public(address: str) -> None:
    assert not is_public_address(ipaddress.ip_address(address))


# --- URL checks --------------------------------------------------------------------------------


def test_check_url_returns_scheme_host_and_default_port() -> None:
    checked = check_url("HTTPS://Images.Example.COM/a.png")
    assert (checked.scheme, checked.host, checked.port) == ("https", "images.example.com", 443)
    assert str(checked.url) == "https://images.example.com/a.png"
    assert check_url("http://[::1]:8080/").host == "::1"
    assert check_url("http://bücher.test/").host == "xn--bcher-kva.test"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http:///a.png", "image_url: URL has no host"),
        ("http://images.test:0/", "image_url: URL has an invalid port"),
        ("http://images.test:99999/", NOT_VALID),
        ("http://[::1/", NOT_VALID),
        ("http://images.test../", NOT_VALID),
    ],
)
def test_check_url_refuses_malformed_urls(url: str, message: str) -> None:
    with pytest.raises(ValidationException) as caught:
        check_url(url)

    assert caught.value.message == message
