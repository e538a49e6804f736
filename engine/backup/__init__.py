"""Backups: continuous log backup and full backups to object storage.

This package holds the object-store target layer (``targets``: the only module that
talks to obstore) and a fault-injecting wrapper for tests and drills (``faults``).
The uploader and restore are built on :class:`Target` and nothing else.
"""

from __future__ import annotations

from .targets import (
    DEFAULT_PART_SIZE,
    MIN_PART_SIZE,
    ObjectInfo,
    Target,
    TargetOptions,
    forget_memory_targets,
    open_target,
    validate_key,
    validate_prefix,
)

__all__ = [
    "DEFAULT_PART_SIZE",
    "MIN_PART_SIZE",
    "ObjectInfo",
    "Target",
    "TargetOptions",
    "forget_memory_targets",
    "open_target",
    "validate_key",
    "validate_prefix",
]
