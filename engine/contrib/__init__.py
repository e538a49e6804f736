"""Integrations with other libraries, built on the public ``engine`` API only.

Nothing here is imported by ``import engine``: each module is imported by name
(``engine.contrib.eventsourcing``) and may need a package the engine itself does not
depend on.
"""
