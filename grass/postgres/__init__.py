"""PostgreSQL for whichever layer keeps its tables there (the stores, the ledger).

- :mod:`~grass.postgres.pool`: the connection pool (:class:`~grass.postgres.pool.Database`),
  transactions with retries on serialization failure and deadlock, and a read replica;
- :mod:`~grass.postgres.connection`: the connection each unit of work gets, and its rows;
- :mod:`~grass.postgres.errors`: the one place where driver errors become storage errors;
- :mod:`~grass.postgres.migrate`: the migration runner, one version sequence per owner
  (each owner ships its own ``NNNN_name.sql`` files), and
  :mod:`~grass.postgres.single_sequence`, the conversion of a database migrated before owners;
- :mod:`~grass.postgres.codecs`: the type codecs set on every connection.

It knows no table of its own but the runner's bookkeeping, and imports neither the stores nor
the ledger: both import it.
"""
