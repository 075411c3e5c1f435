"""The writer's signing key: a hex private key, or an encrypted keystore file (EIP-2335 style
JSON as written by geth, ``cast wallet`` or ``eth_account.Account.encrypt``) and its password."""

from __future__ import annotations

import json
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

from grass.errors import ConfigError


def load_signer(
    *, private_key: str = "", keystore_path: str = "", password: str = ""
) -> LocalAccount:
    """The account that signs ``setRoot``; ConfigError (never the key) when it cannot be read."""
    if private_key:
        try:
            account: LocalAccount = Account.from_key(private_key)
            return account
        except (ValueError, TypeError):
            raise ConfigError(["ledger.private_key: not a 32-byte hex private key"]) from None
    if keystore_path:
        path = Path(keystore_path)
        try:
            keystore = json.loads(path.read_text(encoding="utf-8"))
            key = Account.decrypt(keystore, password)
        except OSError as exc:
            problem = f"ledger.keystore_path: cannot read {path}: {exc.strerror}"
            raise ConfigError([problem]) from None
        except (ValueError, KeyError, TypeError):
            # A wrong password and a malformed file both end here; say which key to look at.
            problem = "ledger.keystore_path: cannot decrypt the keystore (wrong password or file)"
            raise ConfigError([problem]) from None
        decrypted: LocalAccount = Account.from_key(key)
        return decrypted
    raise ConfigError(["ledger.private_key: web3 needs a private key or a keystore_path"])
