"""SpendGuard's accounting on its own: which faults stop a run, after how many requests, and why."""

import pytest

from studyllm_core.providers.errors import (
    BadRequestError,
    ConnectFailedError,
    MalformedResponseError,
    ServerError,
    SystemicFaultError,
)
from studyllm_core.services.capture import spend
from studyllm_core.services.capture.spend import SpendGuard


def guard(planned: int = 100) -> SpendGuard:
    return SpendGuard("p", planned=planned, min_failure_budget=20, where="the base URL http://x/v1 (--base-url)")


def test_a_malformed_answer_repeated_on_one_request_is_not_systemic():
    g = guard()
    for _ in range(10):  # the retry policy caps one request's tries; one bad text must not stop the run
        g.failed_attempt(MalformedResponseError("p returned NaN", reason="nan"), "batch-1")


def test_malformed_answers_over_two_requests_with_no_success_stop_the_run():
    g = guard()
    for _ in range(3):
        g.failed_attempt(MalformedResponseError("p returned a body that is not JSON", reason="not_json"), "b1")
    with pytest.raises(SystemicFaultError, match=r"stopped after .*not JSON.*4 times in a row over 2 requests.*"
                                                 r"web page, proxy or login portal.*http://x/v1"):
        g.failed_attempt(MalformedResponseError("p returned a body that is not JSON", reason="not_json"), "b2")


def test_a_success_between_faults_resets_the_streak():
    g = guard()
    for item in ("b1", "b2", "b3"):
        g.failed_attempt(MalformedResponseError("nan", reason="nan"), item)
        g.succeeded()
    g.failed_attempt(MalformedResponseError("nan", reason="nan"), "b4")
    assert g.proven


def test_a_400_naming_a_parameter_stops_at_once_and_one_naming_the_input_never_does():
    g = guard()
    for i in range(30):  # every text too long: each fails alone, the run goes on (the budget still applies)
        g.failed_attempt(BadRequestError("p returned HTTP 400: maximum context length is 8192 tokens"), f"b{i}")
        g.failed_attempt(BadRequestError("p returned HTTP 400", code="context_length_exceeded"), f"c{i}")
    with pytest.raises(SystemicFaultError, match=r"param.*'dimensions' is refused for every input: leave out --dimensions"):
        guard().failed_attempt(BadRequestError("p returned HTTP 400 [param dimensions]: no", param="dimensions"), "b")


def test_unexplained_400s_stop_after_three_different_requests():
    g = guard()
    g.failed_attempt(BadRequestError("Invalid request"), "b1")
    g.failed_attempt(BadRequestError("Invalid request"), "b2")
    with pytest.raises(SystemicFaultError, match="3 different requests rejected in a row"):
        g.failed_attempt(BadRequestError("Invalid request"), "b3")


def test_refused_connections_stop_only_after_the_window(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(spend.time, "monotonic", lambda: now[0])
    g = guard()
    for _ in range(6):  # many attempts within the window: a server restarting
        g.failed_attempt(ConnectFailedError("p cannot connect to http://x/v1 (connection refused)"), "b1")
        now[0] += 0.5
    now[0] += spend.CONNECT_WINDOW_S
    with pytest.raises(SystemicFaultError, match=r"connection refused.*start the server or fix the base URL"):
        g.failed_attempt(ConnectFailedError("p cannot connect to http://x/v1 (connection refused)"), "b1")


def test_the_failure_budget_is_one_failure_per_planned_request_and_at_least_the_minimum():
    g = guard(planned=5)
    for i in range(20):
        g.failed_attempt(ServerError("p returned HTTP 500"), f"b{i}")
    with pytest.raises(SystemicFaultError, match=r"21 failed requests for a run that needs 5"):
        g.failed_attempt(ServerError("p returned HTTP 500"), "b20")
    g = guard(planned=40)
    for i in range(40):
        g.failed_attempt(ServerError("p returned HTTP 500"), f"b{i}")
    g.add_planned(1)  # a split batch needs one more request
    g.failed_attempt(ServerError("p returned HTTP 500"), "b41")
    with pytest.raises(SystemicFaultError):
        g.failed_attempt(ServerError("p returned HTTP 500"), "b42")
