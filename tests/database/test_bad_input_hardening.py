"""Bad input met with a typed engine error on a reopened database too (issue 13's
examples that are fixed; each also checks that committed data is intact)."""

from __future__ import annotations

import pytest

import engine
from tests.support.cli import run_json


@pytest.fixture
def reopened(db_path):  # type: ignore[no-untyped-def]
    with engine.open(db_path) as db:
        for i in range(5):
            db.append(f"s{i}", "e", b"%d" % i)
        db.snapshot()
        db.append("tail", "e", b"t")
    db = engine.open(db_path)  # reopened: the state is the C index until a snapshot
    yield db
    db.close()


def _intact(db: engine.Database) -> None:
    assert db.position.tx_id == 6 and db.get("s3") == b"3" and db.version("tail") == 1


@pytest.mark.parametrize("bad", [123, None, b"s1", 1.5, ["s1"]])
def test_get_and_version_refuse_a_non_str_name(reopened, bad):
    with pytest.raises(engine.InvalidEventError, match="stream name is a str"):
        reopened.get(bad)
    with pytest.raises(engine.InvalidEventError, match="stream name is a str"):
        reopened.version(bad)
    _intact(reopened)


@pytest.mark.parametrize(("from_tx", "to_tx"), [(2**64, None), (1, 2**64), (-1, None),
                                                 (0, None), (1, -1), ("1", None)])
def test_read_log_refuses_out_of_range_positions(reopened, from_tx, to_tx):
    with pytest.raises(engine.InvalidEventError):
        list(reopened.read_log(from_tx, to_tx))
    _intact(reopened)


def test_a_reducer_returning_str_is_a_reducer_error(db_path):
    with engine.open(db_path, reducer=lambda v, e: "text") as db:  # type: ignore[arg-type,return-value]
        with pytest.raises(engine.ReducerError, match="must return bytes"):
            db.append("s", "e", b"x")
        assert db.position.tx_id == 0  # nothing written
    assert issubclass(engine.ReducerError, TypeError)


def test_inspect_refuses_a_tx_id_past_the_key_range(db_path):
    with engine.open(db_path) as db:
        db.append("s", "e", b"x")
    from tests.support.cli import run

    code, out = run("inspect", db_path, "--tx", str(2**64))
    assert code == 2 and "Traceback" not in out and "range" in out
    code, rep = run_json("inspect", db_path, "--tx", "1")
    assert code == 0 and rep["tx_id"] == 1
