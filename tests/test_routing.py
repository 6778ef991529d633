"""The HTTP guards' pure parts: what a forwarded request keeps, and the compute queue's bound (the live
hop limit is in test_reliability's takeover test, the live 503s in test_hostile)."""

from __future__ import annotations

from streams.worker.routing import HOP_HEADER, Admission, forwarded_headers


def test_a_forwarded_request_keeps_only_accept_and_says_who_forwarded_it():
    client = {"Host": "worker-a:6066", "Cookie": "session=secret", "Authorization": "Bearer t",
              "X-Forwarded-For": "10.0.0.9", "Accept": "application/json", "Connection": "keep-alive"}
    assert forwarded_headers(client, "http://worker-a:6066") == {"Accept": "application/json",
                                                                 HOP_HEADER: "http://worker-a:6066"}


def test_admission_holds_at_most_its_limit_and_frees_a_place_on_the_way_out():
    gate = Admission(2)
    with gate.slot() as first, gate.slot() as second:
        with gate.slot() as third:
            assert (first, second, third) == (True, True, False)
        assert gate.inside == 2
    assert gate.inside == 0
    try:
        with gate.slot():
            raise ValueError("a view that fails")
    except ValueError:
        pass
    assert gate.inside == 0
