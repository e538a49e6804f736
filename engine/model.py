"""Value types the public API hands out. Immutable; cheap to create."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple


class Position(NamedTuple):
    """A point in the log: positions compare as ``(epoch, tx_id)``."""

    epoch: int
    tx_id: int

    def __str__(self) -> str:
        return f"epoch {self.epoch}, tx {self.tx_id}"


class Event(NamedTuple):
    """One committed event.

    ``version`` is 1-based per stream; ``position`` is 1-based and gap-free across
    the whole log and across epochs; ``ts`` is the commit time in Unix seconds.
    """

    stream: str
    version: int
    type: str
    data: bytes
    position: int
    tx_id: int
    epoch: int
    ts: float


class Transaction(NamedTuple):
    """One committed transaction as read back from the log."""

    tx_id: int
    epoch: int
    ts: float
    events: tuple[Event, ...]
    # (name, position) recorded with it by tx.track (takes no event position)
    tracking: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    """A snapshot file written (or found) on disk."""

    path: str
    epoch: int
    tx_id: int
    streams: int
    bytes: int

    @property
    def position(self) -> Position:
        return Position(self.epoch, self.tx_id)


@dataclass(frozen=True, slots=True)
class EpochRecord:
    """One entry of the epoch history: epoch ``epoch`` began at ``first_tx``.

    ``first_position`` is the global event position its first event gets;
    ``time`` is Unix seconds; ``reason`` says why the timeline started.
    """

    epoch: int
    first_tx: int
    first_position: int
    time: float
    reason: str

    def to_json(self) -> dict[str, object]:
        return {
            "epoch": self.epoch,
            "first_tx": self.first_tx,
            "first_position": self.first_position,
            "time": self.time,
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, d: dict[str, object]) -> EpochRecord:
        return cls(
            epoch=int(d["epoch"]),  # type: ignore[call-overload]
            first_tx=int(d["first_tx"]),  # type: ignore[call-overload]
            first_position=int(d["first_position"]),  # type: ignore[call-overload]
            time=float(d["time"]),  # type: ignore[arg-type]
            reason=str(d["reason"]),
        )


Reducer = Callable[[bytes | None, Event], bytes | None]
"""``reducer(value, event) -> new value``: must be deterministic (it runs again on replay)."""


def default_reducer(value: bytes | None, event: Event) -> bytes | None:
    """Type ``"delete"`` clears the value; any other type sets it to the event's data."""
    return None if event.type == "delete" else event.data
