"""Subscribers of the engine's event stream (``nudge_sync.engine.events``) that show what a run did:
structured log records (``jsonlog``), Prometheus metrics (``metrics``) and the HTML report
(``report``, drawn by ``plots``).

Like the command line's progress bars they are outputs: they import only the event contract and
their own libraries (prometheus-client, matplotlib), never a step of the engine, the command line
or a database client. A subscriber that only observes never raises into the run.
"""
