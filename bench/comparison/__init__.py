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
``backup``
    the backup workloads (engine vs Litestream: ``backup_lag``, ``restore``; the
    engine alone: ``backup_flush``, ``backup_shipping``, ``backup_overhead``) and
    how each is measured.
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
engine is faster). For ``backup_lag``, ``ops_per_s`` is 1 / median lag, so
``engine_speedup`` is Litestream's median lag over the engine's.

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

Adding a system (e.g. Litestream, as ``litestream`` was)
---------------------------------------------------------
1. In systems.py, subclass the closest system. ``LitestreamSystem`` subclasses
   ``SqliteSystem`` (the same database) and ``ReplicatedSystem`` (the interface the
   backup workloads call: ``commit_mark``, ``progress``, ``resolve``,
   ``wait_replicated``, ``restore``, ``restored_events``); opened with
   ``replica=DIR`` it starts ``litestream replicate -config <db>.litestream.yml``
   (a subprocess) and ``close`` stops it. It declares only the workloads it is
   measured on: ``workloads = frozenset({"backup_lag", "restore"})``.
2. Register it in ``SYSTEM_CLASSES`` and add it to ``SYSTEMS`` (what is reported
   and selectable with ``--systems``); give it a colour in ``report.plot``.
3. Workloads it cannot run are simply left out of its ``workloads``.

Adding a workload (e.g. ``backup_lag``, ``restore``, as they were)
------------------------------------------------------------------
Write ``def backup_lag(systems, sizes, root) -> {system: entry}`` (the backup
workloads live in backup.py) and register it in workloads.py with
``@workload("backup_lag", unit=..., needs=...)`` (or ``workload(...)(fn)``); use
``measure.rotations``/``timed``/``summarise`` so the method stays the same. If it
calls operations beyond ``ReadableSystem``, declare them on an abstract subclass
(as ``ReplicatedSystem``) and pass it as ``needs``; add the sizes to
``sizes.Sizes``; name the workload in the ``workloads`` of every system that
implements it; drop it from ``SKIPPED``. An entry may carry a ``summary`` (printed
under the table, as details) and ``targets`` (``{name: {value, target, met, meaning}}``,
printed as MET/MISSED under the table).
"""
