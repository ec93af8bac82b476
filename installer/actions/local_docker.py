"""The Docker engine of this machine, for orgs with `ansible_connection: local` (read-only calls)."""

from __future__ import annotations

import subprocess


def docker(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=False)


def container_running(name: str) -> bool:
    r = docker("inspect", "-f", "{{.State.Running}}", name)
    return r.returncode == 0 and r.stdout.strip() == "true"


def project_containers(project: str) -> dict[str, str]:
    """Every container of the Compose project (stopped ones too): name -> state."""
    listed = docker("ps", "-a", "--filter", f"label=com.docker.compose.project={project}",
                    "--format", "{{.Names}} {{.State}}").stdout
    return dict(line.split(" ", 1) for line in listed.splitlines() if " " in line)
