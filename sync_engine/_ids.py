"""Identifiers that look like the real systems' ones.

* Salesforce: 15-character case-sensitive ids (3-character key prefix, 2-character
  instance, a reserved ``0``, 9 base-62 digits) extended to 18 characters by the
  documented case-folding checksum, so ``006…`` opportunities and ``001…``
  accounts pass the same validation real ones do.
* Stripe: ``<prefix>_`` + base-62 characters (``cus_``, ``sub_``, ``in_``, ``pi_``,
  ``re_``, ``evt_``, ``req_``).
* NetSuite: numeric internal ids per record type.

Everything is drawn from a seeded :class:`random.Random`, so a run's ids are
reproducible.
"""

from __future__ import annotations

import itertools
import random
import string
from typing import Final

__all__ = [
    "SALESFORCE_PREFIXES",
    "IdFactory",
    "salesforce_checksum",
    "salesforce_id",
]

_BASE62: Final = string.digits + string.ascii_uppercase + string.ascii_lowercase
_CHECKSUM_ALPHABET: Final = string.ascii_uppercase + "012345"

SALESFORCE_PREFIXES: Final = {
    "Account": "001",
    "Contact": "003",
    "User": "005",
    "Opportunity": "006",
    "OpportunityLineItem": "00k",
    "Product2": "01t",
    "Contract": "800",
}
"""Key prefixes of the Salesforce objects the simulated CRM holds."""

_STRIPE_LENGTHS: Final = {"cus": 14, "sub": 24, "in": 24, "pi": 24, "re": 24, "evt": 24, "req": 14, "ch": 24}


def salesforce_checksum(id15: str) -> str:
    """The 3-character suffix that makes a 15-character id case-insensitive:
    for each 5-character chunk, bit ``i`` is set when character ``i`` is an
    upper-case letter, and the 5-bit number indexes ``A…Z0…5``."""
    if len(id15) != 15:
        raise ValueError(f"a 15-character id is needed, got {id15!r}")
    suffix = []
    for chunk in range(3):
        bits = 0
        for i, char in enumerate(id15[chunk * 5 : chunk * 5 + 5]):
            if "A" <= char <= "Z":
                bits |= 1 << i
        suffix.append(_CHECKSUM_ALPHABET[bits])
    return "".join(suffix)


def salesforce_id(prefix: str, number: int, instance: str = "Dn") -> str:
    """The 18-character id of record ``number`` with key ``prefix``."""
    digits = []
    for _ in range(9):
        number, rem = divmod(number, 62)
        digits.append(_BASE62[rem])
    id15 = f"{prefix}{instance}0{''.join(reversed(digits))}"
    return id15 + salesforce_checksum(id15)


class IdFactory:
    """Mints ids for one simulated system, reproducibly from ``seed``."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)
        self._counters: dict[str, itertools.count[int]] = {}
        # Salesforce record numbers are sequential but start somewhere in the org's history.
        self._sf_base = self._rng.randrange(62**5, 62**6)

    def _next(self, key: str, start: int) -> int:
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = itertools.count(start)
        return next(counter)

    def salesforce(self, sobject: str) -> str:
        """A new 18-character id for a record of ``sobject``."""
        prefix = SALESFORCE_PREFIXES[sobject]
        return salesforce_id(prefix, self._sf_base + self._next(sobject, 1) * 7919)

    def stripe(self, prefix: str) -> str:
        """A new Stripe-style id such as ``cus_NffrFeUfNV2Hib``."""
        length = _STRIPE_LENGTHS.get(prefix, 24)
        tail = "".join(self._rng.choice(_BASE62) for _ in range(length))
        return f"{prefix}_{tail}"

    def netsuite(self, record_type: str) -> str:
        """A new NetSuite internal id (numeric, per record type)."""
        return str(self._next(f"ns:{record_type}", 1000 + self._rng.randrange(0, 9000)))

    def sequence(self, name: str) -> int:
        """The next number of a named sequence, from 1 (document numbers)."""
        return self._next(f"seq:{name}", 1)

    def uuid(self) -> str:
        """A random UUID-shaped string (Salesforce ``EventUuid``)."""
        raw = "".join(self._rng.choice("0123456789abcdef") for _ in range(32))
        return f"{raw[:8]}-{raw[8:12]}-4{raw[13:16]}-a{raw[17:20]}-{raw[20:]}"
