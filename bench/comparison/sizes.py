"""How much work each workload does: the full, ``--quick`` and (smoke-test) tiny sizes."""

from __future__ import annotations

from dataclasses import dataclass

from benchlib import PAYLOAD_BYTES


@dataclass(frozen=True)
class Sizes:
    rounds: int
    batch_events: int  # events per transaction (append_batch, populating)
    batch_streams: int  # append_batch cycles over this many streams
    batch_txs: int  # transactions per system per round
    durable_commits: int  # commits per system per round
    state_streams: int
    state_reads: int  # reads per system per round
    stream_count: int
    stream_events: int  # events per stream (read_stream)
    stream_tx_events: int  # events per transaction when populating read_stream
    stream_reads: int  # streams read per system per round
    reopen_streams: int
    reopen_tail_txs: int  # tail transactions of batch_events events
    reopen_rounds: int
    payload_bytes: int = PAYLOAD_BYTES


FULL = Sizes(
    rounds=7, batch_events=1000, batch_streams=10_000, batch_txs=40, durable_commits=300,
    state_streams=100_000, state_reads=50_000, stream_count=1000, stream_events=100,
    stream_tx_events=100, stream_reads=300, reopen_streams=300_000, reopen_tail_txs=300,
    reopen_rounds=5,
)  # fmt: skip
QUICK = Sizes(
    rounds=7, batch_events=1000, batch_streams=10_000, batch_txs=30, durable_commits=300,
    state_streams=20_000, state_reads=20_000, stream_count=300, stream_events=50,
    stream_tx_events=100, stream_reads=100, reopen_streams=100_000, reopen_tail_txs=100,
    reopen_rounds=3,
)  # fmt: skip
TINY = Sizes(
    rounds=2, batch_events=50, batch_streams=100, batch_txs=2, durable_commits=3,
    state_streams=100, state_reads=50, stream_count=10, stream_events=5, stream_tx_events=7,
    stream_reads=5, reopen_streams=200, reopen_tail_txs=2, reopen_rounds=2,
)  # fmt: skip
