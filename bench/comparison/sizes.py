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
    # ---- the backup workloads (bench/comparison/backup.py)
    lag_seconds: float  # backup_lag: seconds of steady writes per system per round
    lag_rounds: int
    restore_events: int  # restore: events in the database restored ...
    restore_tx_events: int  # ... written in transactions of this many events
    restore_rounds: int
    flush_calls: int  # backup_flush: calls per case (idle, one pending, steady writes)
    ship_txs: int  # backup_shipping: backlog of ship_txs txs of batch_events events
    ship_rounds: int
    overhead_batch_txs: int  # backup_overhead: txs of batch_events events, sync="none"
    overhead_single_commits: int  # one-event commits, sync="none"
    overhead_durable_commits: int  # one-event commits, sync="commit"
    overhead_rounds: int
    lag_period_seconds: float = 0.01  # steady writes: one commit every 10 ms
    lag_poll_seconds: float = 0.005  # what the replica holds is polled this often
    payload_bytes: int = PAYLOAD_BYTES


FULL = Sizes(
    rounds=7, batch_events=1000, batch_streams=10_000, batch_txs=40, durable_commits=300,
    state_streams=100_000, state_reads=50_000, stream_count=1000, stream_events=100,
    stream_tx_events=100, stream_reads=300, reopen_streams=300_000, reopen_tail_txs=300,
    reopen_rounds=5, lag_seconds=15, lag_rounds=2, restore_events=100_000,
    restore_tx_events=1000, restore_rounds=5, flush_calls=200, ship_txs=200, ship_rounds=5,
    overhead_batch_txs=300, overhead_single_commits=15_000, overhead_durable_commits=1000,
    overhead_rounds=14,
)  # fmt: skip
QUICK = Sizes(
    rounds=7, batch_events=1000, batch_streams=10_000, batch_txs=30, durable_commits=300,
    state_streams=20_000, state_reads=20_000, stream_count=300, stream_events=50,
    stream_tx_events=100, stream_reads=100, reopen_streams=100_000, reopen_tail_txs=100,
    reopen_rounds=3, lag_seconds=8, lag_rounds=2, restore_events=100_000,
    restore_tx_events=1000, restore_rounds=3, flush_calls=200, ship_txs=100, ship_rounds=3,
    overhead_batch_txs=300, overhead_single_commits=15_000, overhead_durable_commits=1000,
    overhead_rounds=8,
)  # fmt: skip
TINY = Sizes(
    rounds=2, batch_events=50, batch_streams=100, batch_txs=2, durable_commits=3,
    state_streams=100, state_reads=50, stream_count=10, stream_events=5, stream_tx_events=7,
    stream_reads=5, reopen_streams=200, reopen_tail_txs=2, reopen_rounds=2, lag_seconds=1.0,
    lag_rounds=1, restore_events=2000, restore_tx_events=100, restore_rounds=1, flush_calls=10,
    ship_txs=5, ship_rounds=1, overhead_batch_txs=3, overhead_single_commits=50,
    overhead_durable_commits=5, overhead_rounds=1,
)  # fmt: skip
