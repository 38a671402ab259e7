"""The errors of a results folder: what a user sees when a folder or a run file is not right."""

from __future__ import annotations


class StoreError(RuntimeError):
    """A results folder is missing, unreadable or not a rankbias store."""


class CorruptRunError(StoreError):
    """A run file exists but fails its checksum, cannot be parsed, or belongs to another key."""


class RunReadError(StoreError):
    """A run file exists but cannot be read (permissions, I/O): not proven corrupt, kept."""


class StoreLockedError(StoreError):
    """Another live ``rankbias run`` holds the results folder's lock."""
