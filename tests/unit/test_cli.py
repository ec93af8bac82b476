"""The CLI's answers to bad input: a clear message naming the fix, a non-zero exit, no traceback."""

from __future__ import annotations

import io
import os
import re
import shlex
import stat
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from rich.console import Console

from installer import secrets as gen
from installer.actions import secrets
from installer.backup.s3 import SetInfo
from installer.cli import cli
from installer.commands.backup import sets_table
from installer.inventory import Inventory


def sfp(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "installer.cli", *args], capture_output=True, text=True,
                          input=stdin, timeout=120, env={**os.environ, "COLUMNS": "200"})


def test_init_creates_an_inventory_with_a_private_vault_password(tmp_path: Path) -> None:
    done = sfp("init", str(tmp_path / "inv"))
    assert done.returncode == 0, done.stderr
    password = tmp_path / "inv" / ".vault-pass"
    assert stat.S_IMODE(password.stat().st_mode) == 0o600
    assert ".vault-pass" in (tmp_path / "inv" / ".gitignore").read_text()
    assert sfp("-i", str(tmp_path / "inv"), "validate").returncode == 0
    again = sfp("init", str(tmp_path / "inv"))
    assert again.returncode != 0 and "already holds an inventory" in again.stderr


@pytest.mark.parametrize("args, message", [
    (["install"], "no org given"),
    (["install", "--org", "nope"], "unknown org 'nope'"),
    (["install", "--org", "acme", "--all"], "--org and --all exclude each other"),
    (["uninstall", "--org", "acme", "--purge"], "pass --confirm acme"),
    (["secrets", "show", "--org", "acme", "NOPE"], "has no secrets yet"),
])
def test_bad_arguments(make_inventory: Callable[..., Path], args: list[str], message: str) -> None:
    inv = make_inventory()
    done = sfp("-i", str(inv), *args)
    assert done.returncode != 0
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_missing_inventory(tmp_path: Path) -> None:
    done = sfp("-i", str(tmp_path / "nowhere"), "status")
    assert done.returncode != 0
    assert "does not exist" in done.stderr and "sfp-server init" in done.stderr


def test_invalid_inventory_exits_2_listing_every_problem(make_inventory: Callable[..., Path]) -> None:
    inv = make_inventory()
    main = inv / "host_vars" / "globex" / "main.yml"
    data = yaml.safe_load(main.read_text())
    data["sfp_org"]["ports"]["api"] = 8000  # acme's
    data["sfp_org"]["public_url"] = "ftp://nope"
    main.write_text(yaml.safe_dump(data))
    done = sfp("-i", str(inv), "install", "--all")
    assert done.returncode == 2
    assert "2 problems" in done.stderr
    assert "port 8000 clashes with org 'acme'" in done.stderr
    assert "public_url" in done.stderr
    assert "no host was changed" in done.stderr
    assert not (inv / "host_vars" / "acme" / "vault.yml").exists(), "no secrets are made for an invalid inventory"


def test_secrets_ensure_show_set(make_inventory: Callable[..., Path]) -> None:
    inv = make_inventory()
    done = sfp("-i", str(inv), "secrets", "ensure", "--org", "acme")
    assert done.returncode == 0 and "generated" in done.stdout
    vault_file = inv / "host_vars" / "acme" / "vault.yml"
    assert stat.S_IMODE(vault_file.stat().st_mode) == 0o600
    values = secrets.read(Inventory(inv, inv / ".vault-pass"), "acme")
    assert set(gen.NAMES) <= set(values)
    again = sfp("-i", str(inv), "secrets", "ensure", "--org", "acme")
    assert "all secrets present" in again.stdout
    assert secrets.read(Inventory(inv, inv / ".vault-pass"), "acme") == values
    listed = sfp("-i", str(inv), "secrets", "list", "--org", "acme")
    assert "POSTGRES_PASSWORD" in listed.stdout and values["POSTGRES_PASSWORD"] not in listed.stdout
    shown = sfp("-i", str(inv), "secrets", "show", "--org", "acme", "ANON_KEY")
    assert shown.stdout.strip() == values["ANON_KEY"]
    refused = sfp("-i", str(inv), "secrets", "set", "--org", "acme", "JWT_SECRET", stdin="x" * 40)
    assert refused.returncode != 0 and "not a secret an operator sets" in refused.stderr
    stored = sfp("-i", str(inv), "secrets", "set", "--org", "acme", "SMTP_PASS", stdin="p@ss'word$\n")
    assert stored.returncode == 0 and "p@ss" not in stored.stdout + stored.stderr
    assert secrets.read(Inventory(inv, inv / ".vault-pass"), "acme")["SMTP_PASS"] == "p@ss'word$"


def test_wrong_vault_password_is_a_clear_error(make_inventory: Callable[..., Path], tmp_path: Path) -> None:
    inv = make_inventory()
    assert sfp("-i", str(inv), "secrets", "ensure", "--org", "acme").returncode == 0
    other = tmp_path / "other-pass"
    other.write_text("not the password\n")
    done = sfp("-i", str(inv), "--vault-password-file", str(other), "secrets", "show", "--org", "acme", "ANON_KEY")
    assert done.returncode != 0
    assert "cannot decrypt" in done.stderr and "--vault-password-file" in done.stderr


def tree(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under root with its mode and bytes: what "nothing was changed" compares."""
    return {str(p.relative_to(root)): (p.stat().st_mode, p.read_bytes()) for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("args", [
    ["install", "--org", "nosuch"],
    ["install", "--org", "acme", "--org", "nosuch"],
    ["uninstall", "--org", "nosuch", "--purge", "--confirm", "nosuch"],
    ["status", "--org", "nosuch"],
    ["validate", "--org", "nosuch"],
    ["secrets", "ensure", "--org", "nosuch"],
    ["secrets", "show", "--org", "nosuch", "ANON_KEY"],
    ["secrets", "set", "--org", "nosuch", "SMTP_PASS"],
    ["backup", "run", "--org", "nosuch"],
    ["backup", "list", "--org", "nosuch"],
    ["restore", "--org", "nosuch", "--backup", "latest"],
    ["restore", "--org", "acme", "--backup", "latest", "--as-org", "nosuch"],
    ["sso", "list", "--org", "nosuch"],
    ["sso", "check", "--org", "nosuch"],
    ["logs", "--org", "nosuch"],
    ["logs", "export", "--org", "nosuch", "--since", "1h", "--until", "0s"],
], ids=" ".join)
def test_unknown_org_exits_2_naming_the_known_orgs(make_inventory: Callable[..., Path], args: list[str]) -> None:
    inv = make_inventory()
    before = tree(inv)
    result = CliRunner().invoke(cli, ["-i", str(inv), *args], input="secret value\n")
    assert result.exit_code == 2, (result.output, result.exception)
    assert "'nosuch'" in result.stderr
    if "--as-org" not in args:  # that one names the files to write instead
        assert "unknown org 'nosuch'" in result.stderr and "acme, globex" in result.stderr
    assert "Traceback" not in result.output
    assert tree(inv) == before, "an unknown org must change nothing"


def test_printed_next_command_runs_as_typed(make_inventory: Callable[..., Path], tmp_path: Path) -> None:
    make_inventory()  # tmp_path/inv
    # The console script as an operator types it from this directory (the quickstart: .venv/bin/sfp-server).
    program = os.path.relpath(Path(sys.executable).parent / "sfp-server", tmp_path)
    done = subprocess.run([program, "-i", "inv", "secrets", "set", "--org", "acme", "SMTP_PASS"], cwd=tmp_path,
                          input="p@ss\n", capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    hint = re.search(r"run `([^`]+)` to apply it", done.stdout)
    assert hint, done.stdout
    argv = shlex.split(hint.group(1))
    assert argv == [program, "-i", "inv", "install", "--org", "acme"]
    # Typed in the same directory it parses: --help stops before anything runs.
    again = subprocess.run([*argv, "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "Install or update org stacks" in again.stdout, again.stderr


@pytest.mark.parametrize("ids", [
    ["20261202T030211Z-a1b2c3", "20261203T030207Z-0f9e8d"],
    ["20261202T030211Z-a1b2c3", "20261204T030211.123456Z-0f0f0f"],  # a longer format: width follows the ids
])
def test_backup_list_shows_whole_set_ids_in_80_columns(ids: list[str]) -> None:
    created = datetime(2026, 12, 2, 3, 2, 11, tzinfo=UTC)
    sets = [SetInfo(set_id=i, created=created, complete=n == 0, verified_at=created if n == 0 else None,
                    size=1_234_567_890 // (n + 1), objects=7 + n) for n, i in enumerate(ids)]
    console = Console(width=80, record=True, file=io.StringIO())
    console.print(sets_table(sets))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    for set_id in ids:  # whole, on one line: what `restore --backup ID` needs
        assert any(set_id in line for line in text.splitlines()), text


def test_hints_of_sso_commands_run_as_typed(make_inventory: Callable[..., Path], tmp_path: Path) -> None:
    """`sso list` (markup output) and `sso show` (an error's hint, made in the action) name the
    program as typed and this run's -i, like every other printed follow-up command."""
    make_inventory()  # tmp_path/inv
    program = os.path.relpath(Path(sys.executable).parent / "sfp-server", tmp_path)
    env = {**os.environ, "COLUMNS": "250"}
    listed = subprocess.run([program, "-i", "inv", "sso", "list", "--org", "acme"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120, env=env)
    assert listed.returncode == 0, listed.stderr
    hint = re.search(r"add one with `([^`]+)`", listed.stdout)
    assert hint and shlex.split(hint.group(1))[:6] == [program, "-i", "inv", "sso", "add", "--org"], listed.stdout
    shown = subprocess.run([program, "-i", "inv", "sso", "show", "--org", "acme", "nope"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=120, env=env)
    assert shown.returncode == 1 and "has no SSO provider 'nope'" in shown.stderr
    hint = re.search(r"\(`([^`]+)`\)", shown.stderr)
    assert hint and shlex.split(hint.group(1)) == [program, "-i", "inv", "sso", "list", "--org", "acme"], shown.stderr
