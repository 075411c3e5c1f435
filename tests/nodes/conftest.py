"""Tests of the node side that write through a real store ask for ``storage``: they run on
every backend, with the storage suite's fixtures."""

from __future__ import annotations

from tests.storage.conftest import open_storage, pg_storage_schema, storage

__all__ = ["open_storage", "pg_storage_schema", "storage"]
