"""Throttling of failed authentications (app.domain.throttle), the source address behind a trusted
proxy (protocol.source) and their settings. Time is passed in; nothing sleeps."""

from __future__ import annotations

import pytest

from app.config import ConfigError, load_settings
from app.domain.throttle import Caller, FailureThrottle, ThrottlePolicy
from protocol.source import caller_of, source_address

POLICY = ThrottlePolicy(per_name=3, per_address=5, window_seconds=60, max_entries=50)


def _fail(t: FailureThrottle, name: str, address: str, times: int, now: float = 0.0) -> None:
    for _ in range(times):
        assert t.retry_after("client", name, address, now) == 0
        t.failed("client", name, address, now)


def test_a_name_and_address_are_throttled_after_the_limit_and_only_there() -> None:
    t = FailureThrottle(POLICY)
    _fail(t, "petshow", "10.0.0.1", 3)
    assert t.retry_after("client", "petshow", "10.0.0.1", 0) == pytest.approx(20.0)  # one token per 60/3 s
    assert t.retry_after("client", "petshow", "10.0.0.2", 0) == 0  # the owner elsewhere
    assert t.retry_after("client", "other", "10.0.0.1", 0) == 0  # another name from there (address: 3 of 5)
    assert t.retry_after("factory", "petshow", "10.0.0.1", 0) == 0  # kinds are apart


def test_an_address_spraying_names_is_throttled_for_every_name() -> None:
    t = FailureThrottle(POLICY)
    for i in range(5):
        _fail(t, f"name-{i}", "10.0.0.9", 1)
    assert t.retry_after("client", "never-tried", "10.0.0.9", 0) > 0
    assert t.retry_after("factory", "f", "10.0.0.9", 0) > 0
    assert t.retry_after("client", "never-tried", "10.0.0.8", 0) == 0


def test_the_buckets_refill_with_time() -> None:
    t = FailureThrottle(POLICY)
    _fail(t, "petshow", "a", 3)
    assert t.retry_after("client", "petshow", "a", 19.9) > 0
    assert t.retry_after("client", "petshow", "a", 20.0) == 0  # one more fits
    t.failed("client", "petshow", "a", 20.0)
    assert t.retry_after("client", "petshow", "a", 20.0) > 0
    assert t.retry_after("client", "petshow", "a", 80.0) == 0
    _fail(t, "petshow", "a", 3, now=140.0)  # after a full window the whole burst is back


def test_a_correct_credential_forgives_its_own_failures_not_the_addresss() -> None:
    t = FailureThrottle(POLICY)
    _fail(t, "petshow", "a", 2)
    t.succeeded("client", "petshow", "a")
    _fail(t, "petshow", "a", 2)  # 2 + 2 would be over 3 without the success
    assert t.sizes() == (1, 1)
    assert t.retry_after("client", "x", "a", 0) == 0  # address: 4 of 5
    t.failed("client", "x", "a", 0)
    assert t.retry_after("client", "petshow", "a", 0) > 0  # the address bucket is not forgiven


def test_the_tables_are_capped_and_long_names_take_little_room() -> None:
    t = FailureThrottle(POLICY)
    for i in range(1000):
        t.failed("client", "n" * 1_000_000 if i == 0 else f"n{i}", f"10.1.{i // 250}.{i % 250}", 0)
    names, addresses = t.sizes()
    assert names <= 50 and addresses <= 50
    assert all(len(key[1]) <= 71 for key in t._names.spent)  # type: ignore[index]
    # The most recent ones are the ones kept.
    assert t.retry_after("client", "n999", "10.1.3.249", 0) == 0 and ("client", "n999", "10.1.3.249") in t._names.spent


def test_off_when_limits_are_zero_or_the_caller_has_no_address() -> None:
    off = FailureThrottle(ThrottlePolicy(per_name=0, per_address=0))
    _fail(off, "petshow", "a", 100)
    assert off.sizes() == (0, 0)
    t = FailureThrottle(POLICY)
    for _ in range(10):
        t.failed("client", "petshow", None, 0)
    assert t.retry_after("client", "petshow", None, 0) == 0 and t.sizes() == (0, 0)
    only_address = FailureThrottle(ThrottlePolicy(per_name=0, per_address=2))
    _fail(only_address, "petshow", "a", 2)
    assert only_address.retry_after("client", "petshow", "a", 0) > 0


# ------------------------------------------------------------------ source address


def test_remote_addr_is_the_source_unless_it_is_a_trusted_proxy() -> None:
    env = {"REMOTE_ADDR": "203.0.113.5", "HTTP_X_FORWARDED_FOR": "198.51.100.1"}
    assert source_address(env) == "203.0.113.5"  # no trusted proxies: the header is ignored
    assert source_address(env, ("10.0.0.0/8",)) == "203.0.113.5"  # not from the proxy: ignored
    proxied = {"REMOTE_ADDR": "10.89.0.7", "HTTP_X_FORWARDED_FOR": "1.2.3.4, 198.51.100.1"}
    # nginx appends the address it saw; what the client wrote further left is not believed.
    assert source_address(proxied, ("10.0.0.0/8",)) == "198.51.100.1"
    two_hops = {"REMOTE_ADDR": "10.89.0.7", "HTTP_X_FORWARDED_FOR": "1.2.3.4, 198.51.100.1, 10.0.0.3"}
    assert source_address(two_hops, ("10.0.0.0/8",)) == "198.51.100.1"
    assert source_address({"REMOTE_ADDR": "10.89.0.7"}, ("10.0.0.0/8",)) == "10.89.0.7"
    # A caller inside the trusted network (a factory container behind the same proxy) is itself.
    inside = {"REMOTE_ADDR": "10.89.0.7", "HTTP_X_FORWARDED_FOR": "10.89.0.5"}
    assert source_address(inside, ("10.0.0.0/8",)) == "10.89.0.5"
    assert source_address({"REMOTE_ADDR": "10.89.0.7", "HTTP_X_FORWARDED_FOR": " , 1.2.3.4"}, ("10.0.0.0/8",)) == "1.2.3.4"
    assert source_address({}, ()) == "-"


def test_one_caller_per_request() -> None:
    env: dict[str, object] = {"REMOTE_ADDR": "::1"}
    first = caller_of(env)
    assert caller_of(env) is first and first == Caller("::1")


def test_settings_from_the_environment() -> None:
    s = load_settings({})
    assert (s.auth_throttle_per_name, s.auth_throttle_per_address, s.auth_throttle_window_seconds) == (10, 50, 60)
    assert s.auth_throttle_max_entries == 10_000 and s.trusted_proxies == ()
    s = load_settings(
        {"CONVHUB_AUTH_THROTTLE_PER_NAME": "0", "CONVHUB_TRUSTED_PROXIES": " 10.0.0.0/8, 127.0.0.1 ,fd00::/8"}
    )
    assert s.auth_throttle_per_name == 0
    assert s.trusted_proxies == ("10.0.0.0/8", "127.0.0.1/32", "fd00::/8")
    with pytest.raises(ConfigError, match="CONVHUB_TRUSTED_PROXIES"):
        load_settings({"CONVHUB_TRUSTED_PROXIES": "proxy"})
    with pytest.raises(ConfigError, match="CONVHUB_AUTH_THROTTLE_WINDOW_SECONDS"):
        load_settings({"CONVHUB_AUTH_THROTTLE_WINDOW_SECONDS": "0"})
