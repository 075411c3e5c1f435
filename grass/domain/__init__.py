"""Pure domain models and rules (no I/O): attrs values, validated on construction.

Each module holds one aggregate; import from the module (``grass.domain.devices.Device``).
Invalid values raise :class:`grass.domain.InvalidModel` (a ``ValueError`` and a 422).
"""

from grass.domain._checks import InvalidModel

__all__ = ["InvalidModel"]
