"""Operator actions: bans (IP ranges and users), feature-flag overrides, the audit log."""

from __future__ import annotations

import datetime as dt
import enum
import ipaddress
import re
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from grass.domain import _checks as check
from grass.domain.addresses import parse_address
from grass.ids import is_short_id

FLAG_NAME_PATTERN = r"^[a-z][a-z0-9_.-]{0,63}$"
_FLAG_NAME = re.compile(FLAG_NAME_PATTERN)

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class BanKind(enum.StrEnum):
    IP_RANGE = "ip_range"
    USER = "user"


class AuditAction(enum.StrEnum):
    CONNECTION_KICK = "connection.kick"
    IP_BAN = "ip_range.ban"
    IP_UNBAN = "ip_range.unban"
    USER_BAN = "user.ban"
    USER_UNBAN = "user.unban"
    FLAG_SET = "flag.set"
    FLAG_CLEAR = "flag.clear"
    USER_PROMOTE = "user.promote"
    USER_DEMOTE = "user.demote"


def parse_network(text: str, field: str = "target") -> IpNetwork:
    """A CIDR range (``10.0.0.0/8``) or one address (``203.0.113.7`` = ``/32``).

    Host bits must be zero (``10.0.0.1/8`` is refused rather than silently widened), and an
    IPv4-mapped IPv6 range is refused: the gateway compares IPv4 peers as IPv4.
    """
    try:
        network = ipaddress.ip_network(text.strip(), strict=True)
    except ValueError as exc:
        raise check.InvalidModel(field, f"must be a CIDR range or an IP address ({exc})") from None
    if isinstance(network, ipaddress.IPv6Network) and network.network_address.ipv4_mapped:
        raise check.InvalidModel(field, "write an IPv4-mapped range in its IPv4 form")
    return network


def _target(instance: Ban, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str):
        raise check.InvalidModel(attribute.name, "must be a string")
    if instance.kind is BanKind.USER:
        if not is_short_id(value):
            raise check.InvalidModel(attribute.name, "must be a user id")
    elif str(parse_network(value)) != value:
        raise check.InvalidModel(attribute.name, "must be a range in canonical CIDR form")


@attrs.frozen(kw_only=True)
class Ban:
    """One ban until it is lifted (lifted bans stay, as history). ``target`` is a canonical
    CIDR range or a user id; ``created_by`` becomes None if that operator's account goes."""

    id: str = attrs.field(validator=check.short_id)
    kind: BanKind = attrs.field(validator=check.member(BanKind))
    target: str = attrs.field(validator=_target)
    reason: str | None = attrs.field(default=None, validator=check.optional_text(256))
    created_by: str | None = attrs.field(validator=check.optional_short_id)
    created_at: dt.datetime = attrs.field(validator=check.utc)
    lifted_at: dt.datetime | None = attrs.field(
        default=None, validator=[check.optional_utc, check.not_before("created_at")]
    )

    @property
    def network(self) -> IpNetwork:
        if self.kind is not BanKind.IP_RANGE:
            raise ValueError("a user ban has no network")
        return parse_network(self.target)


def is_flag_name(value: object) -> bool:
    return isinstance(value, str) and _FLAG_NAME.match(value) is not None


def _flag_name(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str) or not _FLAG_NAME.match(value):
        raise check.InvalidModel(
            attribute.name, "must be 1-64 characters of a-z 0-9 _ . -, starting with a letter"
        )


def _boolean(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, bool):
        raise check.InvalidModel(attribute.name, "must be true or false")


@attrs.frozen(kw_only=True)
class FlagOverride:
    """A runtime value of ``config.features[name]`` set by an operator; it wins over the config
    until it is cleared."""

    name: str = attrs.field(validator=_flag_name)
    enabled: bool = attrs.field(validator=_boolean)
    updated_by: str | None = attrs.field(validator=check.optional_short_id)
    updated_at: dt.datetime = attrs.field(validator=check.utc)


def _details(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise check.InvalidModel(attribute.name, "must be a JSON object")


def _audit_id(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise check.InvalidModel(attribute.name, "must be a positive integer")


@attrs.frozen(kw_only=True)
class AuditEntry:
    """Who did what to which target, from where, and when. Never updated or deleted; the store
    numbers entries (``id`` None until stored), and ``actor_id`` becomes None if the account
    goes."""

    id: int | None = attrs.field(default=None, validator=_audit_id)
    actor_id: str | None = attrs.field(validator=check.optional_short_id)
    action: AuditAction = attrs.field(validator=check.member(AuditAction))
    target_type: str = attrs.field(validator=check.text(32))
    target_id: str = attrs.field(validator=check.text(256))
    details: Mapping[str, Any] = attrs.field(factory=dict, validator=_details)
    ip: str | None = attrs.field(default=None, validator=check.optional_ip)
    at: dt.datetime = attrs.field(validator=check.utc)


class BanList:
    """The active bans as the gateway checks them: per connection, in memory, no I/O.

    Ranges are grouped by prefix length, so a check costs one dictionary lookup per distinct
    length in use (a few), however many ranges are banned.
    """

    __slots__ = ("_by_length", "users")

    def __init__(self, ranges: Iterable[str] = (), users: Iterable[str] = ()) -> None:
        self.users = frozenset(users)
        by_length: dict[tuple[int, int], set[int]] = {}
        for text in ranges:
            network = parse_network(text)
            key = (network.version, network.prefixlen)
            by_length.setdefault(key, set()).add(int(network.network_address))
        self._by_length = {key: frozenset(starts) for key, starts in by_length.items()}

    def __len__(self) -> int:
        return sum(len(starts) for starts in self._by_length.values()) + len(self.users)

    def banned_range(self, address: str) -> str | None:
        """The banned range holding ``address`` (canonical, IPv4-mapped counted as IPv4)."""
        ip = parse_address(address)
        if ip is None:
            return None
        value, bits = int(ip), ip.max_prefixlen
        for (version, length), starts in self._by_length.items():
            if version != ip.version:
                continue
            start = value >> (bits - length) << (bits - length) if length else 0
            if start in starts:
                base = (
                    ipaddress.IPv4Address(start) if version == 4 else ipaddress.IPv6Address(start)
                )
                return f"{base}/{length}"
        return None
