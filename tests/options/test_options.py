"""engine.options.Options: defaults, checks, and how open() uses them."""

from __future__ import annotations

import dataclasses

import pytest

import engine
from engine.options import Options


def test_defaults_are_the_documented_ones():
    o = Options()
    assert (o.create, o.sync, o.reducer, o.snapshot_every, o.keep_snapshots) == \
        (True, "commit", None, None, 3)
    assert o.backup is None and o.admin_socket is False and o.readonly is False


def test_options_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Options().sync = "none"  # type: ignore[misc]


@pytest.mark.parametrize("kw", [
    {"sync": "fast"}, {"sync": None}, {"create": 1}, {"keep_snapshots": 0},
    {"keep_snapshots": 2.0}, {"snapshot_every": 0}, {"snapshot_every": True},
    {"reducer": "x"}, {"map_size": 10}, {"group_max_txs": 0}, {"group_max_bytes": -1},
    {"admin_socket": "yes"}, {"readonly": 1},
])
def test_bad_options_are_options_errors_and_value_errors(kw):
    with pytest.raises(engine.OptionsError) as ei:
        Options(**kw)
    assert isinstance(ei.value, ValueError) and isinstance(ei.value, engine.EngineError)
    assert next(iter(kw)) in str(ei.value)  # the message names the option


@pytest.mark.parametrize("kw", [
                                {"readonly": True}])
def test_capabilities_not_built_yet_are_refused_not_ignored(kw):
    with pytest.raises(engine.OptionsError, match="not available"):
        Options(**kw)


def test_unknown_keyword_names_the_known_ones():
    with pytest.raises(engine.OptionsError, match=r"unknown option.*snc.*known: .*sync"):
        Options.from_kwargs({"snc": "none"})


def test_a_bad_option_creates_nothing(tmp_path):
    path = tmp_path / "db"
    with pytest.raises(engine.OptionsError):
        engine.open(path, sync="sometimes")
    assert not path.exists()


def test_database_takes_an_options_object(db_path):
    with engine.Database(db_path, Options(sync="none")) as db:
        assert db.options.sync == "none" and db.sync == "none"
    with pytest.raises(engine.OptionsError, match="either"):
        engine.Database(db_path, Options(), sync="none")


def test_to_json_names_the_reducer_by_name():
    def my_reducer(value, event):  # type: ignore[no-untyped-def]
        return value

    j = Options(reducer=my_reducer).to_json()
    assert j["reducer"].endswith("my_reducer") and j["sync"] == "commit"
