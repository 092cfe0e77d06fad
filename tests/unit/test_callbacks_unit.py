import pytest

from app.domain.errors import BadArgument
from app.services.callbacks import backoff, check_url, with_params


def test_with_params_appends_job_and_status():
    assert with_params("http://h/cb", 5, 3) == "http://h/cb?jobId=5&jobStatus=3"
    assert with_params("https://h/cb?x=1", 5, 4) == "https://h/cb?x=1&jobId=5&jobStatus=4"


def test_only_public_http_targets_unless_allowed():
    public = lambda host: ["93.184.216.34"]  # noqa: E731
    check_url("https://example.org/cb", allow_private=False, resolve=public)
    for url in ["ftp://example.org/x", "file:///etc/passwd", "javascript:alert(1)", "http:///nohost"]:
        with pytest.raises(BadArgument):
            check_url(url, allow_private=True)
    for addr in ["127.0.0.1", "10.1.2.3", "192.168.0.1", "169.254.169.254", "::1"]:
        with pytest.raises(BadArgument):
            check_url("http://internal.example/cb", allow_private=False, resolve=lambda h, a=addr: [a])
    check_url("http://127.0.0.1:9/cb", allow_private=True)


def test_backoff_grows_and_is_capped():
    assert backoff(1).total_seconds() == 10
    assert backoff(2).total_seconds() == 20
    assert backoff(20).total_seconds() == 3600


@pytest.mark.parametrize(
    "url",
    [
        "http://a\r\nX-Injected: 1/",  # would inject a header into the callback's GET
        "http://' OR '1'='1/x",
        "http://exa mple.com/",
        "http://host:99999/",
        "http://host:port/",
        "http://-bad-.example/",
        "http://example.com/" + "a" * 2000,
        "http://example.com/\x00",
    ],
)
def test_malformed_callback_urls_are_refused_even_when_private_targets_are_allowed(url):
    from app.domain.errors import BadArgument
    from app.services.callbacks import check_url

    with pytest.raises(BadArgument):
        check_url(url, allow_private=True)


def test_plain_callback_urls_still_pass():
    from app.services.callbacks import check_url

    for url in ["http://127.0.0.1:9/x", "https://[::1]/x", "http://host-1.example.com./cb?a=1"]:
        check_url(url, allow_private=True)
