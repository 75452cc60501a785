"""What the farm exposes: a warning before a library goes to a public address, and a listener
that is not a TVM tracker named as such."""

from __future__ import annotations

import pytest
from reliability.corpus import echo_listener

from edgenas.errors import EdgenasError
from edgenas.measure import farm_status
from edgenas.measure.rpc import Farm


@pytest.mark.parametrize("host, public", [("127.0.0.1", False), ("localhost", False), ("10.0.0.5", False),
                                          ("192.168.1.20", False), ("::1", False), ("8.8.8.8", True)])
def test_exposed_means_neither_loopback_nor_private(host, public):
    assert farm_status.exposed(host) is public


def test_a_public_tracker_warns_once(capsys, monkeypatch):
    monkeypatch.setattr(farm_status, "_warned_hosts", set())
    Farm("8.8.8.8:9190", "k", target="x86-avx2")
    Farm("8.8.8.8:9190", "k", target="x86-avx2")
    Farm("127.0.0.1:9190", "k", target="x86-avx2")
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "8.8.8.8" in err[0] and "no authentication" in err[0] and "SSH tunnel" in err[0]


@pytest.mark.parametrize("reply", [None, b"HTTP/1.1 400 Bad Request\r\n\r\n"], ids=["echo", "http"])
def test_a_listener_that_is_not_a_tracker_is_named(reply):
    addr = echo_listener(reply)
    with pytest.raises(EdgenasError, match="not a TVM (RPC )?tracker"):
        farm_status.farm_status(addr, timeout_s=2)
