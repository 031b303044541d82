"""The README is part of the product: its set-up commands are the ones CI runs, and every command
and exit code it documents exists (and vice versa)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from click.testing import CliRunner

from nudge_sync import ExitCode
from nudge_sync.cli.app import cli

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def block(marker: str) -> str:
    m = re.search(rf"<!-- {marker} -->\n```bash\n(.*?)\n```\n<!-- /{marker} -->", README, re.S)
    assert m, f"README has no <!-- {marker} --> block"
    return m.group(1).strip()


def test_set_up_is_two_commands():
    install, test = block("install-command"), block("test-command")
    assert "\n" not in install and "\n" not in test
    assert install.endswith("nudge-sync demo") and "pip install" in install
    assert test.endswith("python -m pytest -n 2") and "'.[test]'" in test


def test_ci_runs_exactly_the_readme_test_command():
    extracted = subprocess.run(
        ["awk", r"/<!-- test-command -->/{f=1;next} /<!-- \/test-command -->/{f=0} f && !/^```/", "README.md"],
        cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    assert extracted == block("test-command")
    assert "awk '/<!-- test-command -->/" in (ROOT / ".ci" / "run").read_text()


def commands() -> list[str]:
    out = []
    for name, cmd in cli.commands.items():
        subs = getattr(cmd, "commands", None)
        out += [f"{name} {s}" for s in subs] if subs else [name]
    return out


def test_every_cli_command_is_documented():
    for command in commands():
        assert f"`nudge-sync {command}" in README, f"README does not document `nudge-sync {command}`"


def test_every_documented_command_exists():
    documented = set(re.findall(r"^\| `nudge-sync ([a-z]+(?: [a-z]+)?)", README, re.M))
    documented = {d.split(" ")[0] if d.split(" ")[0] not in ("feedback",) else d for d in documented}
    assert documented <= set(commands()) | {c.split()[0] for c in commands()}


def test_exit_codes_table_matches_the_code_and_the_help():
    table = dict(re.findall(r"^\| (\d) \| (.+?) \|$", README, re.M))
    assert sorted(int(c) for c in table) == sorted(int(c) for c in ExitCode)
    # cold try: --help stopped at 7 while the README (and watch) had 8
    help_text = CliRunner().invoke(cli, ["--help"]).stdout
    listed = re.findall(r"^    (\d)  ", help_text.split("Exit codes:")[1], re.M)
    assert listed == [str(int(c)) for c in ExitCode]


def test_every_run_option_is_documented():
    run = cli.commands["run"]
    for param in run.params:
        for opt in param.opts:
            if opt.startswith("--") and opt not in ("--help",):
                assert f"`{opt}" in README, f"README does not mention {opt} of `nudge-sync run`"


def test_the_config_example_is_accepted(tmp_path):
    from nudge_sync.cli.app import cli
    from nudge_sync.cli.config import load_config

    m = re.search(r"```toml\n(.*?)```", README, re.S)
    assert m, "README has no TOML config example"
    path = tmp_path / "nudge-sync.toml"
    path.write_text(m.group(1))
    defaults = load_config(path, cli.commands)
    assert defaults["run"]["min_gain"] == 0.005 and defaults["eval"]["split"] == "val"
    assert defaults["feedback"]["import"]["batch_size"] == 500
    assert defaults["status"]["store_uri"].startswith("milvus+http://")
