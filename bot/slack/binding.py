"""What a decision button carries: the request, the start of the spec hash its card showed, and for Pay
the amount the card showed; after an unknown create, the set of candidates the card listed. A click is
taken only for what the approver saw.

The value is `<request id>|<12 hex of the spec hash>`, with `|<amount>` after it on a Pay button when the
card shows an amount; an older card's bare request id is read too, and refused for saying nothing.
"None of these" carries `<request id>|<12 hex of the candidate set's key>`, "This one is ours" the same and
`|<candidate id>` after it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.reconcile import KEY_CHARS, Candidates
from bot.slack.text import code, is_request_id
from bot.store.models import AppRequest

HASH_CHARS = 12
_HASH = re.compile(rf"[0-9a-f]{{{HASH_CHARS}}}")
_KEY = re.compile(rf"[0-9a-f]{{{KEY_CHARS}}}")
MAX_AMOUNT_CHARS = 64
MAX_CANDIDATE_CHARS = 64  # order and job ids are far shorter


@dataclass(frozen=True)
class Shown:
    request_id: str
    spec_hash: str | None = None  # the first HASH_CHARS of the spec hash on the card
    amount: str | None = None  # the amount on a payment card, as shown

    @classmethod
    def parse(cls, value: str) -> Shown | None:
        """The parts of a button value; None when it does not name a request."""
        request_id, _, rest = value.partition("|")
        if not is_request_id(request_id):
            return None
        spec_hash, _, amount = rest.partition("|")
        if spec_hash and not _HASH.fullmatch(spec_hash):
            return None
        return cls(request_id, spec_hash or None, amount[:MAX_AMOUNT_CHARS] or None)


def button_value(request: AppRequest, amount: str | None = None) -> str:
    parts = [request.id, request.spec_hash[:HASH_CHARS]]
    if amount:
        parts.append(amount.replace("|", "/")[:MAX_AMOUNT_CHARS])
    return "|".join(parts)


def mismatch(shown: Shown, request: AppRequest, current_amount: str | None) -> str | None:
    """Why the click is not for the request as it stands, in a sentence; None when it is."""
    if shown.spec_hash is None:
        return (f"This button does not say what it decides (it is from an older card), so nothing was done. "
                f"Decide on {request.id} from the app's Home tab, which shows it as it stands.")
    if not request.spec_hash.startswith(shown.spec_hash):
        return (f"{request.id} is not what this card showed (spec hash {code(shown.spec_hash)} on the card, "
                f"{code(request.spec_hash[:HASH_CHARS])} now), so nothing was done.")
    if shown.amount != current_amount:
        return (f"The amount of {request.id} is not what this card showed ({shown.amount or 'none'} on the card, "
                f"{current_amount or 'none'} now), so nothing was paid.")
    return None


@dataclass(frozen=True)
class ShownChoice:
    """A "None of these" or "This one is ours" click: the request, the key of the candidates its card listed
    (None on an older card, which said nothing about them), and the candidate chosen (None: none of these)."""

    request_id: str
    key: str | None
    candidate_id: str | None

    @classmethod
    def parse(cls, value: str) -> ShownChoice:
        if "|" not in value:  # an older card: `<request id>` or `<request id> <candidate id>`, bound to nothing
            request_id, _, candidate = value.partition(" ")
            return cls(request_id, None, candidate[:MAX_CANDIDATE_CHARS] or None)
        request_id, _, rest = value.partition("|")
        key, _, candidate = rest.partition("|")
        return cls(request_id, key if _KEY.fullmatch(key) else None, candidate[:MAX_CANDIDATE_CHARS] or None)


def choice_value(request: AppRequest, candidate_id: str | None = None) -> str:
    """The value of "None of these" (no candidate) or "This one is ours": bound to the candidates shown now."""
    value = f"{request.id}|{Candidates.of(request).key()}"
    return f"{value}|{candidate_id}" if candidate_id else value
