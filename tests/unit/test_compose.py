"""docker/compose.yaml against the Compose Specification schema (vendored: tests/data/compose-spec.json,
see compose-spec.ORIGIN.md), and every `convhub ...` command it runs against the real CLI parser.
No Docker engine is needed."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from app.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker" / "compose.yaml"
SCHEMA = ROOT / "tests" / "data" / "compose-spec.json"


@pytest.fixture(scope="module")
def compose() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_file_matches_the_compose_specification(compose) -> None:  # type: ignore[no-untyped-def]
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft201909Validator(schema)
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


def test_the_schema_really_rejects_mistakes(compose) -> None:  # type: ignore[no-untyped-def]
    validator = jsonschema.Draft201909Validator(json.loads(SCHEMA.read_text()))
    broken = json.loads(json.dumps(compose))
    broken["services"]["web"]["healthcheck"]["intervall"] = "5s"
    broken["services"]["beat"]["deploy"]["replicas"] = "one"
    assert len(list(validator.iter_errors(broken))) >= 2


def _commands(compose: dict) -> list[tuple[str, list[str]]]:  # type: ignore[type-arg]
    out = []
    for name, svc in compose["services"].items():
        cmd = svc.get("command")
        if cmd is None:
            continue
        assert isinstance(cmd, list), f"{name}: use the exec (list) form for commands"
        out.append((name, cmd))
    return out


def test_every_convhub_command_exists_in_the_cli(compose) -> None:  # type: ignore[no-untyped-def]
    parser = build_parser()
    seen = set()
    for name, cmd in _commands(compose):
        if cmd[0] != "convhub":
            continue
        # Interpolated values (${VAR:-default}) parse as their default.
        argv = [re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", a) for a in cmd[1:]]
        try:
            args = parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"service {name}: `convhub {' '.join(argv)}` is not a valid convhub command")
        assert callable(getattr(args, "func", None)), f"service {name}: {argv} has no handler"
        seen.add(argv[0])
    assert {"web", "worker", "beat", "flower", "db", "factory"} <= seen


def test_topology(compose) -> None:  # type: ignore[no-untyped-def]
    services = compose["services"]
    assert {"web", "worker", "beat", "flower", "factory", "postgres", "rabbitmq", "migrate"} <= set(services)
    assert services["web"]["deploy"]["replicas"] == 2
    assert services["beat"]["deploy"]["replicas"] == 1  # exactly one beat
    assert "--workers" in services["web"]["command"]
    assert "management" in services["rabbitmq"]["image"]
    for name in ("web", "worker", "flower", "postgres", "rabbitmq", "factory", "beat"):
        hc = services[name].get("healthcheck")
        assert hc and not hc.get("disable") and hc.get("test"), f"{name} has no health check"
    for name, svc in services.items():
        deps = svc.get("depends_on", {})
        assert set(deps) <= set(services), f"{name} depends on an unknown service"
        for vol in svc.get("volumes", []):
            source = vol.split(":", 1)[0]
            if not source.startswith((".", "/")):
                assert source in compose["volumes"], f"{name}: undeclared volume {source}"
    for name in ("web", "worker", "beat", "flower"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    # Persistent state on named volumes.
    assert any(v.startswith("pgdata:") for v in services["postgres"]["volumes"])
    assert any(v.startswith("rabbitmq:") for v in services["rabbitmq"]["volumes"])
    # Every service's environment is the same for the server processes (one anchor).
    urls = {
        services[n]["environment"]["CONVHUB_BROKER_URL"]
        for n in ("web", "worker", "beat", "flower", "migrate")
    }
    assert len(urls) == 1 and next(iter(urls)).startswith("amqp://")


def test_dockerfiles(compose) -> None:  # type: ignore[no-untyped-def]
    for name in ("web", "factory"):
        build = compose["services"][name]["build"]
        assert (COMPOSE.parent / build["context"] / build["dockerfile"]).is_file()
    server = (ROOT / "docker" / "server.Dockerfile").read_text()
    assert server.startswith("#") and "FROM python:3.11-slim" in server
    assert "pip install --no-cache-dir -c constraints.txt '.[server]'" in server
    factory = (ROOT / "docker" / "factory.Dockerfile").read_text()
    assert "FROM debian:bookworm" in factory
    for pkg in (
        "libreoffice-writer-nogui",
        "libreoffice-calc-nogui",
        "libreoffice-impress-nogui",
        "python3-uno",
        "poppler-utils",
    ):
        assert pkg in factory
    assert "pip install --no-cache-dir ." in factory and "[server]" not in factory
    # Every file the images copy exists.
    for text in (server, factory):
        for src in re.findall(r"^COPY (.+) \S+$", text, flags=re.M):
            for item in src.split():
                assert (ROOT / item).exists(), f"COPY source {item} missing"
