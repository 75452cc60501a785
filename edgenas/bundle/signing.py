"""Ed25519 signatures over a bundle's ``SHA256SUMS``, so a bundle's origin can be checked.

Why: the manifest and ``SHA256SUMS`` are checksums a bundle carries about itself; whoever can
change a file can rewrite its hash, and ``dlopen`` of the changed library runs its constructors.
A signature by a key the user trusts is what ties the bytes to whoever packaged them
(docs/security.md). ``SHA256SUMS`` lists every file of the bundle including ``manifest.json``, so
signing it signs the whole bundle; the signature sits beside it in ``SHA256SUMS.sig``.

The crypto is the ``cryptography`` package's Ed25519 (no hand-rolled primitives). Keys:

* ``--key FILE`` (a PKCS#8 PEM private key), else
* ``EDGENAS_SIGNING_KEY`` (the PEM text itself, as CI secrets are passed, or a path to it), else
* the user's own key, ``$XDG_CONFIG_HOME/edgenas/signing_key.pem`` (``~/.config/edgenas``),
  generated on first use (mode 0600) with its public half beside it in ``signing_key.pub.pem``.

A public key file (``--trusted-key``) is a PEM ``SubjectPublicKeyInfo``; its fingerprint is the
first 16 hex digits of the sha256 of the raw 32-byte key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from .. import fsio
from ..errors import UsageError

from .manifest import SIGNATURE  # noqa: E402  (one name for the file, beside the other seals)
ENV_KEY = "EDGENAS_SIGNING_KEY"
KEY_NAME, PUB_NAME = "signing_key.pem", "signing_key.pub.pem"


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "edgenas"


def _raw_public(pub) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def fingerprint(pub) -> str:
    return hashlib.sha256(_raw_public(pub)).hexdigest()[:16]


def public_pem(pub) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def _private_from_pem(data: bytes, where: str):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise UsageError(f"{where}: not an unencrypted PEM private key ({str(e).splitlines()[0][:80]})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise UsageError(f"{where}: not an Ed25519 key (edgenas signs with Ed25519)")
    return key


def load_public(path: str | os.PathLike):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise UsageError(f"{p}: cannot read the public key ({e.strerror})") from None
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        try:  # a private key file given as the trusted key: its public half is what is meant
            return _private_from_pem(data, str(p)).public_key()
        except UsageError:
            raise UsageError(f"{p}: not a PEM public key (`edgenas package` prints where yours is)") from None
    if not isinstance(key, Ed25519PublicKey):
        raise UsageError(f"{p}: not an Ed25519 public key")
    return key


@dataclass(frozen=True)
class SigningKey:
    key: object            # Ed25519PrivateKey
    source: str            # where it came from, for messages
    public_file: Path | None  # where its public half can be found, when there is such a file

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.key.public_key())


def signing_key(path: str | os.PathLike | None = None) -> SigningKey:
    """The key to sign with: ``path``, else ``$EDGENAS_SIGNING_KEY``, else the user's own key
    (generated on first use)."""
    if path is not None:
        p = Path(path)
        try:
            return SigningKey(_private_from_pem(p.read_bytes(), str(p)), str(p), None)
        except OSError as e:
            raise UsageError(f"--key {p}: cannot read it ({e.strerror})") from None
    env = os.environ.get(ENV_KEY, "").strip()
    if env:
        if env.startswith("-----BEGIN"):
            return SigningKey(_private_from_pem(env.encode(), f"${ENV_KEY}"), f"${ENV_KEY}", None)
        try:
            return SigningKey(_private_from_pem(Path(env).read_bytes(), f"${ENV_KEY}={env}"), env, None)
        except OSError as e:
            raise UsageError(f"${ENV_KEY}={env}: neither a PEM key nor a readable file ({e.strerror})") from None
    return own_key()


def own_key() -> SigningKey:
    """The user's key in the config dir, created (private 0600, public beside it) on first use."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    d = config_dir()
    key_path, pub_path = d / KEY_NAME, d / PUB_NAME
    if not key_path.exists():
        d.mkdir(parents=True, exist_ok=True)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never readable by others
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        fsio.write_text(pub_path, public_pem(key.public_key()).decode())
    key = _private_from_pem(key_path.read_bytes(), str(key_path))
    if not pub_path.exists():
        fsio.write_text(pub_path, public_pem(key.public_key()).decode())
    return SigningKey(key, str(key_path), pub_path)


def own_public():
    """The user's own public key, or ``None`` when no key was generated yet."""
    pub_path = config_dir() / PUB_NAME
    return load_public(pub_path) if pub_path.exists() else None


def default_trusted() -> list:
    """The keys this user signs with (``$EDGENAS_SIGNING_KEY``'s, their own): what ``verify``
    trusts when no ``--trusted-key`` is given, so a bundle packaged here verifies here."""
    keys = []
    if os.environ.get(ENV_KEY, "").strip():
        keys.append(signing_key().key.public_key())
    own = own_public()
    if own is not None:
        keys.append(own)
    return keys


def sign(path: Path, key: SigningKey) -> Path:
    """Write ``path``'s signature to ``path.parent / SIGNATURE``."""
    sig = key.key.sign(path.read_bytes())
    body = {"algorithm": "ed25519", "signed_file": path.name, "signature": base64.b64encode(sig).decode(),
            "public_key": base64.b64encode(_raw_public(key.key.public_key())).decode(),
            "fingerprint": key.fingerprint}
    return fsio.write_text(path.parent / SIGNATURE, json.dumps(body, indent=2, sort_keys=True) + "\n")


@dataclass(frozen=True)
class SignatureCheck:
    valid: bool            # the signature matches the signed file under ``fingerprint``'s key
    trusted: bool          # ... and that key is one of the trusted keys
    fingerprint: str       # the key the signature names (or was checked with)
    detail: str


def check(root: Path, signed_name: str, trusted: list | None) -> SignatureCheck:
    """Check ``root/SIGNATURE`` over ``root/signed_name``.

    With ``trusted`` keys, the signature must verify under one of them. Without, it is checked
    under the public key it carries: that catches bytes changed after signing, but anyone can
    sign with a key of their own, so it says nothing about who packaged the bundle."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    sig_path = root / SIGNATURE
    if not sig_path.is_file():
        return SignatureCheck(False, False, "", f"{SIGNATURE}: missing (the bundle is not signed)")
    try:
        body = json.loads(sig_path.read_text())
        sig = base64.b64decode(body["signature"], validate=True)
        carried = Ed25519PublicKey.from_public_bytes(base64.b64decode(body["public_key"], validate=True))
        if body.get("signed_file") != signed_name:
            raise ValueError(f"signs {body.get('signed_file')!r}, not {signed_name}")
    except (ValueError, KeyError, TypeError) as e:
        return SignatureCheck(False, False, "", f"{SIGNATURE}: unreadable ({str(e)[:80]})")
    data = (root / signed_name).read_bytes()
    for pub in (trusted or [carried]):
        try:
            pub.verify(sig, data)
        except InvalidSignature:
            continue
        fp = fingerprint(pub)
        if trusted:
            return SignatureCheck(True, True, fp, f"ed25519 signature by trusted key {fp}")
        return SignatureCheck(True, False, fp, f"ed25519 signature valid under the key it carries ({fp}), "
                                               "which is not a trusted key")
    if trusted:
        fps = ", ".join(fingerprint(k) for k in trusted)
        return SignatureCheck(False, False, fingerprint(carried),
                              f"{SIGNATURE}: not signed by a trusted key ({fps}); it names key {fingerprint(carried)}, "
                              f"or {signed_name} changed after signing")
    return SignatureCheck(False, False, fingerprint(carried),
                          f"{SIGNATURE}: does not match {signed_name} (changed after signing)")


__all__ = ["SIGNATURE", "ENV_KEY", "SigningKey", "SignatureCheck", "signing_key", "own_key", "own_public",
           "load_public", "default_trusted", "sign", "check", "fingerprint", "public_pem", "config_dir"]
