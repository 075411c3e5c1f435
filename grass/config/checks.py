"""Checks across settings: what one value alone cannot say is wrong (a web3 ledger without an
RPC URL, a pool whose minimum is above its maximum, score weights that do not add up, ...)."""

from __future__ import annotations

from grass.config.sections import Config, LedgerBackend, StorageBackend


def cross_checks(config: Config) -> list[str]:
    problems: list[str] = []
    if config.storage.backend is StorageBackend.POSTGRES and not config.storage.postgres_dsn:
        problems.append("storage.postgres_dsn: required when storage.backend is postgres")
    if config.ledger.backend is LedgerBackend.POSTGRES and (
        config.storage.backend is not StorageBackend.POSTGRES
    ):
        problems.append("ledger.backend: postgres needs storage.backend = postgres")
    if config.ledger.backend is LedgerBackend.WEB3:
        if not config.ledger.rpc_url:
            problems.append("ledger.rpc_url: required when ledger.backend is web3")
        if not (config.ledger.private_key or config.ledger.keystore_path):
            problems.append("ledger.private_key: web3 needs a private key or a keystore_path")
        if not config.ledger.contract_address:
            problems.append(
                "ledger.contract_address: required when ledger.backend is web3"
                " (deploy one with `grass ledger deploy`)"
            )
    if bool(config.server.tls_cert) != bool(config.server.tls_key):
        problems.append("server.tls_cert, server.tls_key: give both or neither")
    if config.storage.pool_min_size > config.storage.pool_max_size:
        problems.append("storage.pool_min_size: larger than storage.pool_max_size")
    if config.limits.max_stored_devices_per_user < config.limits.max_devices_per_user:
        problems.append(
            "limits.max_stored_devices_per_user: smaller than limits.max_devices_per_user"
        )
    if config.rates.bucket_seconds < 1 or config.rates.epoch_seconds < config.rates.bucket_seconds:
        problems.append("rates.epoch_seconds: must be at least one bucket long")
    elif config.rates.epoch_seconds % config.rates.bucket_seconds:
        problems.append("rates.epoch_seconds: must be a whole number of buckets")
    problems.extend(_engine_checks(config))
    return problems


def _engine_checks(config: Config) -> list[str]:
    # Imported here: the domain imports nothing from config, and config stays importable alone.
    from grass.domain.ranks import InvalidRanks, parse_ranks
    from grass.domain.scoring import InvalidCidr, InvalidScoreParams, parse_cidrs, score_params

    problems: list[str] = []
    try:
        parse_cidrs(config.score.datacenter_cidrs)
    except InvalidCidr as exc:
        problems.append(f"score.datacenter_cidrs: {exc}")
    try:
        score_params(config.score)
    except InvalidScoreParams as exc:
        problems.append(f"score: {exc}")
    if config.closer.correction_window < config.closer.delay + config.rates.bucket_seconds:
        problems.append("closer.correction_window: must be at least closer.delay plus one bucket")
    try:
        parse_ranks(config.rates.referral_ranks)
    except InvalidRanks as exc:
        problems.append(f"rates.referral_ranks: {exc}")
    if config.rates.epoch_genesis % config.rates.bucket_seconds:
        problems.append("rates.epoch_genesis: must fall on a bucket boundary")
    problems.extend(_http_checks(config))
    return problems


def _http_checks(config: Config) -> list[str]:
    from grass.domain.addresses import parse_networks

    try:
        parse_networks(config.http.trusted_proxies)
    except ValueError as exc:
        return [f"http.trusted_proxies: {exc}"]
    return []
