"""The tests use the installed package (make python), not client/python."""

import os

import gradserve
import gradserve.v1.gradient_service_pb2 as pb

SOURCE = os.path.realpath(os.path.join(os.path.dirname(__file__), "..", "..", "client",
                                       "python"))


def test_the_installed_package_is_imported():
    path = os.path.realpath(gradserve.__file__)
    assert "site-packages" in path and not path.startswith(SOURCE), path
    # The stubs were generated at build time into the package.
    assert os.path.dirname(os.path.realpath(pb.__file__)) == os.path.join(
        os.path.dirname(path), "v1")
    assert not os.path.exists(os.path.join(SOURCE, "gradserve", "v1")), \
        "generated stubs must not land in the source tree"


def test_typed():
    assert os.path.exists(os.path.join(os.path.dirname(gradserve.__file__), "py.typed"))
