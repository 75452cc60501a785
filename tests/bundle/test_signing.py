"""Ed25519 signing of a bundle's SHA256SUMS: key sources, tampering, the wrong key."""

from __future__ import annotations

import stat

import pytest

from edgenas.bundle import signing
from edgenas.errors import UsageError


def _signed(tmp_path, key):
    root = tmp_path / "b"
    root.mkdir()
    (root / "SHA256SUMS").write_text("0" * 64 + "  model.so\n")
    signing.sign(root / "SHA256SUMS", key)
    return root


def test_own_key_is_made_once_private_and_signs(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    key = signing.signing_key()
    assert signing.signing_key().fingerprint == key.fingerprint           # generated once, then reused
    assert stat.S_IMODE((tmp_path / "cfg" / "edgenas" / signing.KEY_NAME).stat().st_mode) == 0o600
    root = _signed(tmp_path, key)
    pub = signing.load_public(key.public_file)
    ok = signing.check(root, "SHA256SUMS", [pub])
    assert ok.valid and ok.trusted and ok.fingerprint == key.fingerprint
    untrusted = signing.check(root, "SHA256SUMS", None)
    assert untrusted.valid and not untrusted.trusted and "not a trusted key" in untrusted.detail

    (root / "SHA256SUMS").write_text("1" * 64 + "  model.so\n")               # rehashed after signing
    assert not signing.check(root, "SHA256SUMS", [pub]).valid
    assert not signing.check(root, "SHA256SUMS", None).valid


def test_wrong_key_env_key_and_bad_key_files(tmp_path, monkeypatch):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    pem = Ed25519PrivateKey.generate().private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()).decode()
    monkeypatch.setenv(signing.ENV_KEY, pem)
    ci = signing.signing_key()
    assert ci.source == f"${signing.ENV_KEY}"
    root = _signed(tmp_path, ci)
    other = tmp_path / "other.pub.pem"
    other.write_bytes(signing.public_pem(Ed25519PrivateKey.generate().public_key()))
    wrong = signing.check(root, "SHA256SUMS", [signing.load_public(other)])
    assert not wrong.valid and "not signed by a trusted key" in wrong.detail

    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    with pytest.raises(UsageError, match="bad.pem: not an unencrypted PEM private key"):
        signing.signing_key(bad)
    with pytest.raises(UsageError, match="bad.pem: not a PEM public key"):
        signing.load_public(bad)
