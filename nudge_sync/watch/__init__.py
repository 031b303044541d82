"""Unattended runs: the watcher loop (``loop.watch``), its schedules (``schedule``), and the bridge
that hands an event sink to the engine (``bridge``). A library first: ``nudge-sync watch`` is a
thin command over ``watch()``."""
