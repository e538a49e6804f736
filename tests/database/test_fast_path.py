"""The input fast path (engine.transaction): what it lets through unchecked is exactly
what the full check returns unchanged, and TransactionBuilder.append's inlined copy of
the predicate agrees with fast_ok."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from engine import formats
from engine.transaction import TransactionBuilder, _check_event_slow, check_event

names = st.one_of(st.text(max_size=20), st.text(alphabet="ab\0é", max_size=5),
                  st.just("x" * formats.MAX_NAME_BYTES),
                  st.just("x" * (formats.MAX_NAME_BYTES + 1)),
                  st.just("t" * (formats.MAX_TYPE_BYTES + 1)), st.none(), st.integers(),
                  st.binary(max_size=4))
datas = st.one_of(st.binary(max_size=20), st.text(max_size=3), st.none(),
                  st.builds(bytearray, st.binary(max_size=3)))


def _takes_slow_path(call) -> tuple[bool, object]:  # type: ignore[no-untyped-def]
    """Run ``call`` counting calls of the full check; (slow path taken, result)."""
    import engine.transaction as tr

    calls = []
    real = tr._check_event_slow

    def counting(*args):  # type: ignore[no-untyped-def]
        calls.append(args)
        return real(*args)

    tr._check_event_slow = counting
    try:
        try:
            result: object = call()
        except tr.InvalidEventError as exc:
            result = type(exc)
    finally:
        tr._check_event_slow = real
    return bool(calls), result


@given(names, names, datas)
def test_the_fast_path_passes_only_what_the_full_check_returns_unchanged(s, t, d):
    slow, result = _takes_slow_path(lambda: check_event(s, t, d))
    if not slow:
        assert result == (s, t, d) == _check_event_slow(s, t, d)


@given(names, names, datas)
def test_the_inlined_copy_in_append_agrees_with_check_event(s, t, d):
    """Append takes the slow path exactly when check_event does (the copies agree)."""
    slow_check, _ = _takes_slow_path(lambda: check_event(s, t, d))
    slow_append, _ = _takes_slow_path(
        lambda: TransactionBuilder(lambda intent: 1).append(s, t, d))
    assert slow_append == slow_check
