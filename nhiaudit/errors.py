"""One root error; a subclass only where a caller handles it differently.

Messages follow ``<where>: <what is wrong>. <how to fix>``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class NhiauditError(Exception):
    """Anything the user can act on: bad input, bad policy, bad rule, store problems."""


class PolicyError(NhiauditError):
    """The policy file is invalid. ``problems`` holds every problem found, one message each."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


class RuleError(NhiauditError):
    """A rule file is invalid. ``problems`` holds every problem found, not just the first."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


class StoreError(NhiauditError):
    """The store cannot be opened or is in use by another writer."""


class NotFoundError(NhiauditError):
    """An id matched nothing. ``suggestions`` holds the closest known ids."""

    def __init__(self, message: str, suggestions: list[str] | None = None):
        self.suggestions = suggestions or []
        super().__init__(message)


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """`` Did you mean 'x'?`` for the closest candidate, or an empty string."""
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""
