"""Customer privacy in decks and exports meant for wide circulation.

Names and customer ids become salted hashes (stable within a salt, so the same customer
keeps the same pseudonym across slides and runs). Contact details never reach a deck: the
loader keeps only contract columns, so a phone or e-mail column in an export is dropped at
the door.
"""

from __future__ import annotations

import hashlib
import hmac
import os

import pandas as pd

from fupan.io.schema import TABLES

PII_COLUMNS = tuple(
    sorted({c.name for t in TABLES.values() for c in t.columns if c.pii} | {"customer_id"})
)
SALT_ENV = "FUPAN_PII_SALT"


def pseudonym(value: object, salt: str, prefix: str = "") -> str:
    """A short keyed hash (HMAC-SHA256) of ``value``; empty values stay empty."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    digest = hmac.new(salt.encode("utf-8"), str(value).encode("utf-8"), hashlib.sha256).hexdigest()
    return f"{prefix}{digest[:10]}"


def resolve_salt(salt: str | None = None) -> str:
    """The masking key: the environment variable wins, so a shared params file need not hold it."""
    key = os.environ.get(SALT_ENV) or salt
    if not key:
        raise ValueError(f"masking PII needs a salt: set {SALT_ENV} or privacy.salt in the params")
    return key


def mask_pii(
    df: pd.DataFrame, salt: str, columns: tuple[str, ...] | list[str] | None = None
) -> pd.DataFrame:
    """A copy of ``df`` with identifying columns replaced by salted hashes.

    Parameters
    ----------
    df : any table (an at-risk list, the largest lost accounts, ...).
    salt : the key; keep it out of the deck.
    columns : columns to mask; default every PII column of the contract plus ``customer_id``.
    """
    out = df.copy()
    for col in columns or PII_COLUMNS:
        if col in out.columns:
            prefix = "C-" if col == "customer_id" else "N-"
            out[col] = out[col].map(lambda v, p=prefix: pseudonym(v, salt, p))
    return out
