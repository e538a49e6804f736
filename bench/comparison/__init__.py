"""The engine against the alternatives a user would pick, run in one process.

``bench/compare.py`` is the command line; this package is what it runs. It needs
``bench/`` on ``sys.path`` (for itself and ``benchlib``, whose helpers it uses:
payloads, stream names, result directories, the installed ``engine``).

Modules, one job each:

``systems``
    the :class:`~comparison.systems.System` interface and one class per store.
``workloads``
    one function per workload, registered in ``WORKLOADS`` with its unit and the
    interface it calls; ``SKIPPED`` lists the planned ones.
``measure``
    the method: rotated rounds, garbage-collected timed blocks, medians.
``sizes``
    the full, ``--quick`` and tiny (smoke-test) sizes.
``runner``
    ``run()``: the selected workloads on the systems that declare them, into the
    JSON-ready result.
``report``
    the table, the JSON line and the plot.

Method: every workload builds one database per system from the same events, then
runs timed rounds in which every system does the same operations, in an order that
rotates from round to round. ``ops_per_s`` is the median over rounds;
``engine_speedup`` is the engine's ``ops_per_s`` divided by the system's (> 1: the
engine is faster).

How a system declares what it supports
--------------------------------------
A system is a subclass of ``System`` (writes only) or ``ReadableSystem`` (also
``get`` and ``read_stream``) with four class attributes: ``name``, ``workloads``
(the frozenset of workload names it is measured on), ``file_suffix`` (``None`` for
a directory store, e.g. ``".db"`` for a one-file store) and ``note`` (one line for
the report). ``runner.run`` gives each workload only the selected systems whose
``workloads`` contain it (``workloads.systems_for``), and refuses a system that
declares a workload without the interface the workload needs (``Workload.needs``).
Nothing is tried and caught: an operation a system lacks is never called.
``eventsourcing_app`` declares ``{"append_batch"}`` only; it is not selectable on
its own but runs beside ``eventsourcing`` and is reported inside its entry.

Adding a system (e.g. Litestream)
---------------------------------
1. In systems.py, subclass the closest system; for SQLite replicated by the
   ``litestream`` binary::

       class LitestreamSystem(SqliteSystem):
           name = "litestream"
           workloads = frozenset({"append_batch", "append_durable", "read_state",
                                  "read_stream", "reopen", "backup_lag", "restore"})
           note = "sqlite3 WAL replicated by `litestream replicate` to a file replica"

           def __init__(self, path, durable):
               super().__init__(path, durable)
               # start `litestream replicate <path> file://<path>.replica` (subprocess)

           def close(self):
               ...  # stop the replicator, then super().close()

2. Register it in ``SYSTEM_CLASSES`` and add it to ``SYSTEMS`` (what is reported
   and selectable with ``--systems``); give it a colour in ``report.plot``.
3. Workloads it cannot run are simply left out of its ``workloads``.

Adding a workload (e.g. ``backup_lag``, ``restore``)
----------------------------------------------------
Write ``def backup_lag(systems, sizes, root) -> {system: entry}`` in workloads.py,
decorated with ``@workload("backup_lag", unit=..., needs=...)``; use
``measure.rotations``/``timed``/``summarise`` so the method stays the same. If it
calls operations beyond ``ReadableSystem`` (say ``replica_lag()`` or
``restore(to)``), declare them on a new abstract subclass (``ReplicatedSystem``)
and pass it as ``needs``; add the sizes to ``sizes.Sizes``; name the workload in
the ``workloads`` of every system that implements it; drop it from ``SKIPPED``.
"""
