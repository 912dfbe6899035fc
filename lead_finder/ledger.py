"""The ledger's states and records: what a request that may cost money went through.

A job moves through these states::

    intent ──► submitted ──► completed
      │  │         │    └──► ambiguous ──► completed | failed | expired
      │  │         └───────► failed | expired
      │  └─► completed            (a synchronous request answers at once: no task id)
      └────► ambiguous | failed | expired

``intent``     written and committed *before* the POST; keys, the exact lead dicts sent (with
               their ``lead_finder_ref``) and the options, so a resume can rebuild the join.
``submitted``  the server's task id, committed as soon as it is known: a crash from here on is
               resumed by polling, never by sending again.
``completed``  results cached, ledger closed and spend recorded in one transaction.
``ambiguous``  the POST went out but its answer was lost; it may have been billed, so it is
               never resent on its own.
``failed``     the server (or the caller) says the job ended without results.
``expired``    the server no longer knows the task id.

``completed``, ``failed`` and ``expired`` are final. A transition that is not allowed from the
current state changes nothing and returns False, so two processes that race to resume the same
job cannot both complete it (nor both record its spend).

The rules are pure (`can_transition`); the store applies them inside its write transactions.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .models import Mode, Result

__all__ = ["FINAL_STATES", "OPEN_STATES", "Claim", "JobState", "LedgerJob", "can_transition"]


class JobState(enum.StrEnum):
    """A ledger job's state; see the module docstring for the transitions."""

    INTENT = "intent"
    SUBMITTED = "submitted"
    COMPLETED = "completed"
    AMBIGUOUS = "ambiguous"
    FAILED = "failed"
    EXPIRED = "expired"


OPEN_STATES = frozenset({JobState.INTENT, JobState.SUBMITTED})
FINAL_STATES = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.EXPIRED})

# target state -> states it may be entered from
ALLOWED_FROM: Mapping[JobState, frozenset[JobState]] = {
    JobState.SUBMITTED: frozenset({JobState.INTENT}),
    JobState.COMPLETED: frozenset({JobState.INTENT, JobState.SUBMITTED, JobState.AMBIGUOUS}),
    JobState.AMBIGUOUS: frozenset({JobState.INTENT, JobState.SUBMITTED}),
    JobState.FAILED: frozenset({JobState.INTENT, JobState.SUBMITTED, JobState.AMBIGUOUS}),
    JobState.EXPIRED: frozenset({JobState.INTENT, JobState.SUBMITTED, JobState.AMBIGUOUS}),
}


def can_transition(current: str, target: str) -> bool:
    """Whether a ledger job may move from state `current` to state `target`."""
    try:
        return JobState(current) in ALLOWED_FROM.get(JobState(target), frozenset())
    except ValueError:
        return False


@dataclass(frozen=True)
class LedgerJob:
    """One ledger row: a request that may cost money, and how far it got."""

    id: str
    state: JobState
    task_id: str | None
    keys: tuple[str, ...]
    leads: tuple[Mapping[str, Any], ...]
    mode: Mode
    options: Mapping[str, Any]
    estimated_cents: int
    charge_cents: int | None
    created: float
    updated: float
    error: str | None
    run_id: str | None

    @property
    def is_open(self) -> bool:
        """True while the job is `intent` or `submitted` (it may still produce results)."""
        return self.state in OPEN_STATES


@dataclass(frozen=True)
class Claim:
    """What `Store.claim` decided for a batch of keys."""

    #: The new `intent` job for the keys this caller should send, or None when there are none.
    job: LedgerJob | None
    #: Keys with a fresh cached result: nothing to send.
    cached: Mapping[str, Result]
    #: Keys already in an open job (of any process): key -> that job's id. Wait, do not send.
    held: Mapping[str, str]
    #: Keys that would be sent but are beyond the caller's `limit` (its budget).
    over_budget: tuple[str, ...]
    #: Keys whose last request was lost after it went out (key -> that ambiguous job's id). They
    #: may have been charged, so they are not sent again until the user releases the job.
    ambiguous: Mapping[str, str] = field(default_factory=dict)
