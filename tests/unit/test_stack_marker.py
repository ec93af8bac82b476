"""The `stack` marker follows the fixtures: a test that reaches the Docker engine through any chain of
fixtures is left out of the fast loop (`-m "not stack"`), whatever directory it lives in."""

from __future__ import annotations

import pytest

CONFTEST = '''
import pytest

from tests.conftest import docker_engine, pytest_collection_modifyitems  # noqa: F401


@pytest.fixture
def my_org(docker_engine):
    return "an org deployed on the engine"


@pytest.fixture
def my_org_with_data(my_org):
    return my_org
'''

TESTS = '''
def test_needs_nothing():
    pass


def test_uses_the_engine_directly(docker_engine):
    pass


def test_uses_a_deployment(my_org):
    pass


def test_uses_a_fixture_of_a_deployment(my_org_with_data):
    pass
'''


def test_a_fixture_chain_to_the_engine_marks_the_test_stack(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nmarkers =\n    stack: needs the local Docker engine\n")
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_made_up=TESTS)
    fast = pytester.runpytest("--collect-only", "-q", "-m", "not stack", "--strict-markers")
    ids = [line for line in fast.outlines if "::" in line]
    assert ids == ["test_made_up.py::test_needs_nothing"], fast.outlines
    stack = pytester.runpytest("--collect-only", "-q", "-m", "stack", "--strict-markers")
    assert sorted(line.split("::")[1] for line in stack.outlines if "::" in line) == [
        "test_uses_a_deployment", "test_uses_a_fixture_of_a_deployment", "test_uses_the_engine_directly"]
