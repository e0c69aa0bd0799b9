"""What of a token or secret may be shown, and which columns hold tokens: one home for both.

Imports nothing of Django or of the rest of the app, so any module (the doctor runs before the app registry
matters to it) can use it.
"""

from __future__ import annotations

# The secret columns of `OAuthSession` (its tokens and its DPoP private key): deferred wherever they are not
# needed, stripped when a record ends.
TOKEN_FIELDS = ("access_token", "id_token", "refresh_token", "dpop_key")

MASK = "*****MASKED*****"


def mask(value: str, *, show: int = 4, min_length: int = 16, empty: str = "—") -> str:
    """`abcd*****MASKED*****`: the first `show` characters, enough to tell values apart at a glance and never
    enough to use one; a value shorter than `min_length` is masked entirely, an empty one reads `empty`.

    The defaults are the admin's for tokens; the doctor shows a client secret as Auth0's guides do
    (`show=3, min_length=12`).
    """
    if not value:
        return empty
    return (value[:show] if len(value) >= min_length else "") + MASK
