"""pytest's settings for the whole repository (tests/conftest.py holds the tests' fixtures)."""

import pytest

# Doctests that export or run whole models: long, like the tests marked slow.
SLOW_DOCTESTS = ("sian.export.",)


def pytest_collection_modifyitems(items):
    for item in items:
        if isinstance(item, pytest.DoctestItem) and item.name.startswith(SLOW_DOCTESTS):
            item.add_marker(pytest.mark.slow)
