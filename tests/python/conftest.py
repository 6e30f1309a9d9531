import pytest

import gs


@pytest.fixture(scope="session")
def server():
    """One gradserve for the session; tests must leave it healthy."""
    s = gs.Server()
    yield s
    s.close()  # fails if it died, or exits with an error (a sanitizer's report)


@pytest.fixture(autouse=True)
def server_survives(request):
    """A test after which the shared server is dead fails, with its output
    (a sanitizer's report names the bug), not only the tests after it."""
    if "server" not in request.fixturenames:
        yield
        return
    s = request.getfixturevalue("server")
    if not s.alive():
        pytest.fail("gradserve died in an earlier test (its output is there)")
    yield
    assert s.alive(), f"gradserve died during this test:\n{s.output()}"
