"""TLS and bearer tokens: the right token is served, a wrong one is
gradserve.Unauthenticated carrying the server's message."""

import hashlib
import subprocess

import numpy as np
import pytest

import gradserve


def certificates(directory):
    """A CA and a server certificate for localhost/127.0.0.1 (openssl CLI)."""
    def run(*args):
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    (directory / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1",
        "-subj", "/CN=gradserve package test CA")
    run("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "1", "-extfile", "san.ext")


def test_tls_and_tokens(start_server, tmp_path):
    certificates(tmp_path)
    token = "package-test-token"
    (tmp_path / "tokens").write_text(
        f"team-a {hashlib.sha256(token.encode()).hexdigest()}\n")
    server = start_server(f"--tls_cert={tmp_path / 'server.pem'}",
                          f"--tls_key={tmp_path / 'server.key'}",
                          f"--auth_tokens_file={tmp_path / 'tokens'}")
    tls = gradserve.TLS(ca=str(tmp_path / "ca.pem"))
    g = gradserve.Graph()
    g.output(g.relu(g.input("x")))
    with gradserve.Client(server.address, tls=tls, token=token) as client:
        assert "auth" in client.info().features
        np.testing.assert_array_equal(client.predict(g, {"x": [-1.0, 2.0]})["relu1"], [0, 2])
    with gradserve.Client(server.address, tls=tls, token="wrong") as client:
        with pytest.raises(gradserve.Unauthenticated) as caught:
            client.predict(g, {"x": [1.0]})
        assert caught.value.details
