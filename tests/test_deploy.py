"""The deployment recipes of deploy/ (crontab line, systemd service + timer, Kubernetes CronJob)
and the compose file's watcher, checked as far as this machine allows: parsed, their schedules
read by croniter, the units verified by ``systemd-analyze verify`` (pointed at this environment's
console script), the command lines they run parsed by ``nudge-sync`` itself, and the README
showing each file as it is."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from croniter import croniter

from nudge_sync.cli.app import cli

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
README = (ROOT / "README.md").read_text()
NUDGE_SYNC = Path(sys.executable).parent / "nudge-sync"


def parses(argv: list[str]) -> None:
    """``nudge-sync ARGV`` is accepted by the command line (parsed only: ``--help`` stops it there)."""
    from click.testing import CliRunner

    args = [a for a in argv if a != "nudge-sync" and not a.endswith("/nudge-sync")]
    result = CliRunner().invoke(cli, [*args, "--help"], env={"NUDGE_SYNC_STORE": "memory://x?collection=y"})
    assert result.exit_code == 0, f"{argv}: {result.output}"
    command = next(a for a in args if not a.startswith("-") and a in cli.commands)
    options = [a.split("=")[0] for a in args if a.startswith("--")]
    known = {o for p in cli.commands[command].params for o in p.opts} | {o for p in cli.params for o in p.opts}
    assert set(options) <= known, f"unknown options {set(options) - known} for {command}"


def test_every_recipe_is_in_the_readme_as_it_is():
    for path in sorted(DEPLOY.iterdir()):
        body = path.read_text().strip()
        assert body in README, f"README does not show deploy/{path.name} as it is"


def test_the_crontab_line():
    lines = [line for line in (DEPLOY / "crontab").read_text().splitlines() if line and not line.startswith("#")]
    assert len(lines) == 1
    fields = lines[0].split(None, 5)
    assert croniter.is_valid(" ".join(fields[:5]))
    command = fields[5]
    assert "%" not in command  # cron would turn it into a newline
    assert "[ $rc -eq 3 ]" in command  # exit 3 is not an error
    run = shlex.split(command.split("&&", 1)[1].split(">>", 1)[0])
    parses([a for a in run if "=" not in a or a.startswith("--")])
    result = subprocess.run(["bash", "-n", "-c", command], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_systemd_units_verify(tmp_path):
    service = (DEPLOY / "nudge-sync.service").read_text()
    exec_start = next(line for line in service.splitlines() if line.startswith("ExecStart="))
    parses(shlex.split(exec_start.split("=", 1)[1]))
    assert "SuccessExitStatus=3" in service
    timer = (DEPLOY / "nudge-sync.timer").read_text()
    assert "OnCalendar=" in timer and "Persistent=true" in timer
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed")
    # verify checks that ExecStart's program exists: point it at this environment's console script
    (tmp_path / "nudge-sync.service").write_text(service.replace("/usr/local/bin/nudge-sync", str(NUDGE_SYNC)))
    (tmp_path / "nudge-sync.timer").write_text(timer)
    result = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "nudge-sync.service"),
                             str(tmp_path / "nudge-sync.timer")], capture_output=True, text=True, timeout=60)
    problems = [line for line in result.stderr.splitlines() if "nudge-sync" in line]
    assert result.returncode == 0 and not problems, result.stderr
    calendar = subprocess.run(["systemd-analyze", "calendar", "*-*-* 03:00:00 UTC"], capture_output=True, text=True)
    assert calendar.returncode == 0, calendar.stderr


def test_the_kubernetes_cronjob():
    job = yaml.safe_load((DEPLOY / "cronjob.yaml").read_text())
    assert (job["apiVersion"], job["kind"]) == ("batch/v1", "CronJob")
    spec = job["spec"]
    assert spec["concurrencyPolicy"] == "Forbid" and croniter.is_valid(spec["schedule"])
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    script = container["args"][0]
    assert container["command"] == ["/bin/sh", "-c"] and 'if [ "$rc" -eq 3 ]; then exit 0; fi' in script
    result = subprocess.run(["sh", "-n", "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    parses(shlex.split(script.split(";")[0].replace('"$PUSHGATEWAY_URL"', "http://gw:9091")))
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["NUDGE_SYNC_LOG_FORMAT"] == "json"
    assert not any(k in e for e in container["env"] for k in ("API_KEY", "TOKEN"))  # secrets from the Secret


def test_the_compose_service_runs_the_watcher():
    service = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["nudge-sync"]
    assert service["command"][0] == "watch"
    parses(service["command"])
    assert "profiles" not in service and service["restart"] == "unless-stopped"
    assert service["environment"]["NUDGE_SYNC_LOG_FORMAT"] == "json"
    assert "127.0.0.1:9464:9464" in service["ports"]
