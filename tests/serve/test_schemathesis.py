"""Schemathesis against the service's own OpenAPI schema (in-process ASGI, and a real server on loopback;
bounded examples): for every operation, generated requests never get a 5xx and every answer matches the
schema."""

import signal

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lmrec.serve.app import create_app
from tests.serve.test_durability import KEY as KEY_REAL
from tests.serve.test_durability import free_port, start

KEY = "s" * 24


def test_no_server_errors_and_answers_match_the_schema(bundles, tmp_path):
    app = create_app(bundles["itemknn"], tmp_path / "events.sqlite", api_key=KEY)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.label for op in operations} >= {"POST /recommend", "POST /events", "GET /users/{user_id}"}
    # one strategy over every operation: Hypothesis spreads its bounded examples across them
    strategy = st.one_of([op.as_strategy() for op in operations])

    @given(case=strategy)
    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None,
              derandomize=True)  # the same examples on every run: CI repeats
    def check(case):
        case.call_and_validate(headers={"X-API-Key": KEY})

    check()


@pytest.mark.slow
def test_a_real_server_on_loopback_too(bundles, tmp_path):
    """The same check over HTTP against `lmrec serve` on 127.0.0.1 (uvicorn, the store on disk), on a text
    model so that queries and new items are exercised, not just refused."""
    port = free_port()
    server = start(bundles["lmcontent"], tmp_path / "events.sqlite", port)
    try:
        schema = schemathesis.openapi.from_url(f"http://127.0.0.1:{port}/openapi.json")
        strategy = st.one_of([result.ok().as_strategy() for result in schema.get_all_operations()])

        @given(case=strategy)
        @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None,
                  derandomize=True)
        def check(case):
            case.call_and_validate(headers={"X-API-Key": KEY_REAL})

        check()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
