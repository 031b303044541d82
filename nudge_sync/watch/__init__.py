"""Unattended runs: the watcher loop (``loop.watch``) and its schedules (``schedule``). A library
first: ``nudge-sync watch`` is a thin command over ``watch()``."""
