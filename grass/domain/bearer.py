"""Bearer secrets handed to clients: session tokens, API keys and mailed tokens.

The client keeps the secret; every store keeps only its SHA-256 (a 256-bit random secret needs
no slow hash: it cannot be guessed, only stolen, and a stolen hash is not the secret).
"""

from __future__ import annotations

import hashlib

from grass.ids import token

SESSION_PREFIX = "gs_"
API_KEY_PREFIX = "gk_"
#: Node keys: what a node sends where Grass clients send the user id (43 characters after the
#: prefix, within the 64 a check-in's ``userId`` may have).
NODE_KEY_PREFIX = "gn_"
#: Characters of an API key shown in lists, so a user can tell keys apart.
API_KEY_SHOWN = 10


def hash_token(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def new_session_token() -> str:
    return SESSION_PREFIX + token(32)


def new_api_key() -> str:
    return API_KEY_PREFIX + token(32)


def new_node_key() -> str:
    return NODE_KEY_PREFIX + token(32)


def is_node_key(value: str) -> bool:
    """Whether a node's credential is a node key (else it is a bare user id: legacy v4)."""
    return value.startswith(NODE_KEY_PREFIX)


def new_mail_token() -> str:
    return token(32)
