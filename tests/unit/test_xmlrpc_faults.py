"""The fault table and argument checks of protocol.xmlrpc, without I/O."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import OperationalError

from app.domain import errors
from protocol.xmlrpc import faults, methods, wire


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (errors.BadArgument("bad page range 3-1"), 400),
        (errors.AuthenticationFailed("authentication failed"), 401),
        (errors.FactoryDisabled("factory 'x' is disabled"), 403),
        (errors.NotFound("unknown job 'g'"), 404),
        (errors.LeaseNotHeld("lease on job g is not held by 'f'"), 409),
        (errors.TooLarge("document is larger than the limit"), 413),
        (errors.Unavailable("database unavailable"), 503),
        (OperationalError("SELECT secret FROM x", {}, Exception("connection refused")), 503),
        (KeyError("/srv/app/internal.py"), 500),
    ],
)
def test_table(exc, code):
    got_code, text = faults.fault_for(exc)
    assert got_code == code
    assert "\n" not in text
    if code >= 500:
        assert "SELECT" not in text and "/srv" not in text and "connection refused" not in text


def test_fault_string_is_one_short_line():
    _, text = faults.fault_for(errors.BadArgument("line one\nline two " + "x" * 1000))
    assert text.startswith("line one line two") and len(text) <= faults.MAX_FAULT_STRING


def test_arity_and_type_messages_name_the_argument():
    finish = methods.METHODS["jobs.finish"]
    with pytest.raises(errors.BadArgument, match=r"jobs.finish\(factory_name, job, format, document\[, lease\]\) takes 4 to 5 arguments, got 1"):
        methods.check_args(finish, ["f"])
    with pytest.raises(errors.BadArgument, match="argument job of jobs.finish must be a string, got int"):
        methods.check_args(finish, ["f", 1, "pdf", "UEs="])
    with pytest.raises(errors.BadArgument, match="argument document of jobs.finish must be base64 text"):
        methods.check_args(finish, ["f", "g", "pdf", 1.5])
    with pytest.raises(errors.BadArgument, match="factory_name of jobs.poll is longer than 1024"):
        methods.check_args(methods.METHODS["jobs.poll"], ["x" * 1025])
    b64 = wire.Base64Value("UEs=")
    assert methods.check_args(finish, ["f", "g", "pdf", b64, None]) == ["f", "g", "pdf", "UEs=", None]


def test_signatures_cover_the_optional_lease():
    assert methods.METHODS["jobs.fail"].signatures() == [
        ["struct", "string", "string", "string"], ["struct", "string", "string", "string", "string"],
        ["struct", "string", "string", "string", "string", "boolean"],  # [ext] permanent
    ]


def test_fail_takes_an_optional_boolean_permanent():
    fail = methods.METHODS["jobs.fail"]
    assert methods.check_args(fail, ["f", "g", "bad", "l", True]) == ["f", "g", "bad", "l", True]
    assert methods.check_args(fail, ["f", "g", "bad", "l", None]) == ["f", "g", "bad", "l", None]
    with pytest.raises(errors.BadArgument, match="permanent of jobs.fail must be a boolean"):
        methods.check_args(fail, ["f", "g", "bad", "l", "yes"])
    assert methods.METHODS["system.listMethods"].signatures() == [["array"]]
