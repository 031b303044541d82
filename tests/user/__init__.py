"""The user-level suite (issue #10): nudge-sync as users run it.

Every step is the real ``nudge-sync`` console script of the active environment, in its own
process, against the six real backends of tests/backends; results are read back with each
database's own client. Faults are injected at named probe points (``NUDGE_SYNC_FAULTS``, see
``nudge_sync/engine/faults.py``), never with sleeps; every trial is counted in a session file that
``python -m tests.user.summary`` renders as the README's summary table.

    _runner.py      runs the console script, one process per step; no traceback may reach stderr
    _native.py      the backends as the suite drives them: URIs, native reads that open and close
    _data.py        the small collection + feedback log every test uses, its reference results
    _probes.py      kill / pause rules for the fault probes, the probe trace
    _tally.py       counted trials, appended to a session-wide JSON-lines file
    _servers.py     servers the suite may kill and restart (own data dir and port)
    _fakes.py       echoing fake servers for the secrets tests (HTTP 502, gRPC)
    _writer.py      the application writer: a separate process writing with the native client
    _digest.py      a digest of every record of a collection: proof that a refused command wrote nothing
    summary.py      renders the trial counts as the README's Markdown table
"""
