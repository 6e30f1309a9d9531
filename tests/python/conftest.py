import pytest

import gs


@pytest.fixture(scope="session")
def server():
    """One gradserve for the session; tests must leave it healthy."""
    s = gs.Server()
    yield s
    assert s.alive(), f"gradserve died during the tests: {s.output()}"
    s.close()
