"""Configuration files: TOML, one table per command, feeding click's ``default_map``.

    # nudge-sync.toml
    store = "milvus:///var/lib/milvus/docs.db?collection=docs"   # every command
    log = "docs_feedback"                                        # every command that takes --log

    [run]
    objective = "ndcg@10"
    min_gain = 0.005
    max_changed_fraction = 0.1

    [eval]
    split = "test"

Precedence: command-line flag > environment variable (``NUDGE_SYNC_<COMMAND>_<OPTION>``, e.g.
``NUDGE_SYNC_RUN_MIN_GAIN``; ``NUDGE_SYNC_STORE`` for the store) > config file > built-in default.
``plan`` previews ``run``: it takes the ``[run]`` table and the ``NUDGE_SYNC_RUN_*`` variables
(a ``[plan]`` table overrides the first).
Secrets are never read from config files: API keys and tokens come from the environment or a
secret file (see ``connectors._uri``).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import connectors

from ..engine.errors import RefusedInput

#: Keys allowed at the top level; they apply to every command that has such an option.
SHARED_KEYS = ("store", "collection", "log", "state")
_SECRET_WORDS = ("api_key", "apikey", "token", "password", "secret")
#: The most bytes read from a config file: a real one is a few hundred bytes.
MAX_CONFIG_BYTES = 1024 * 1024


def load_config(path: str | Path, commands: dict[str, Any]) -> dict[str, Any]:
    """Read a TOML file into a click ``default_map`` for ``commands`` ({name: click command})."""
    path = Path(path)
    raw = connectors.read_bounded(path, MAX_CONFIG_BYTES, f"config file {str(path)!r}", RefusedInput)
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise RefusedInput(f"config file {str(path)!r} is not UTF-8 text (byte {exc.start}): "
                           "is it a TOML file?") from None
    except tomllib.TOMLDecodeError as exc:
        raise RefusedInput(f"config file {str(path)!r} is not valid TOML: {exc}") from None
    except RecursionError:
        raise RefusedInput(f"config file {str(path)!r}: TOML nested too deeply") from None
    _refuse_secrets(data, str(path))
    shared = {k: data.pop(k) for k in SHARED_KEYS if k in data}
    unknown_tables = sorted(k for k in data if k not in commands)
    if unknown_tables:
        raise RefusedInput(f"config file {str(path)!r}: unknown key(s) or table(s) {unknown_tables}; "
                           f"top-level keys: {list(SHARED_KEYS)}, tables: {sorted(commands)}")
    defaults = _defaults_for(commands, shared, data, str(path))
    if "plan" in defaults and "run" in defaults:
        # `plan` is `run --dry-run`: it previews the run the file configures ([plan] may override)
        run = {k: v for k, v in defaults["run"].items() if k != "dry_run"}
        defaults["plan"] = {**run, **defaults["plan"]}
    return defaults


def _defaults_for(commands: dict[str, Any], shared: dict[str, Any], tables: dict[str, Any], where: str,
                  prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, cmd in commands.items():
        table = tables.get(name, {})
        if not isinstance(table, dict):
            raise RefusedInput(f"config file {where!r}: [{prefix}{name}] must be a table")
        sub = getattr(cmd, "commands", None)
        if sub:  # a group such as `feedback`: its tables are nested ([feedback.import])
            unknown = sorted(k for k in table if k not in sub)
            if unknown:
                raise RefusedInput(f"config file {where!r}: [{prefix}{name}] has unknown key(s) or table(s) "
                                   f"{unknown}; its tables: {sorted(f'{prefix}{name}.{k}' for k in sub)}")
            out[name] = _defaults_for(sub, shared, table, where, f"{prefix}{name}.")
            continue
        # keys are option names as typed on the command line (min_gain, context, store, log ...)
        names = {p.name: p.name for p in cmd.params}
        names.update({o.lstrip("-").replace("-", "_"): p.name for p in cmd.params for o in p.opts if o.startswith("--")})
        unknown = sorted(k for k in table if k.replace("-", "_") not in names)
        if unknown:
            raise RefusedInput(f"config file {where!r}: [{prefix}{name}] has unknown option(s) {unknown}; "
                               f"allowed: {sorted(k for k in names if k not in ('help',))}")
        params = {p.name: p for p in cmd.params}
        merged = {names[k]: _value_for(params[names[k]], v, k, where) for k, v in shared.items() if k in names}
        merged.update({names[k.replace("-", "_")]: _value_for(params[names[k.replace("-", "_")]], v,
                                                              f"[{prefix}{name}] {k}", where)
                       for k, v in table.items()})
        if merged:
            out[name] = merged
    return out


_SCALARS = (str, int, float, bool)


def _value_for(param: Any, value: Any, key: str, where: str) -> Any:
    """A config value in the shape its option takes: a list for a repeatable option (a single value
    is a list of one), a plain string / number / boolean otherwise. Click then checks the value
    itself, as it does on the command line."""
    if getattr(param, "multiple", False):
        items = value if isinstance(value, list) else [value]
        if not all(isinstance(v, _SCALARS) for v in items):
            raise RefusedInput(f"config file {where!r}: {key} must be a value or a list of values, got {value!r}")
        return items
    if not isinstance(value, _SCALARS):
        raise RefusedInput(f"config file {where!r}: {key} must be a single string, number or boolean, got {value!r}")
    return value


def _refuse_secrets(data: dict[str, Any], where: str, prefix: str = "") -> None:
    for key, value in data.items():
        if isinstance(value, dict):
            _refuse_secrets(value, where, f"{prefix}{key}.")
        elif any(w in key.lower() for w in _SECRET_WORDS):
            raise RefusedInput(f"config file {where!r}: {prefix}{key} looks like a secret; secrets are read "
                               "only from environment variables or secret files, never from config files")
