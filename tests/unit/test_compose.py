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
from app.domain.matching import WorkerSpec

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker" / "compose.yaml"
SCHEMA = ROOT / "tests" / "data" / "compose-spec.json"
INIT = ROOT / "docker" / "init.sh"


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
    assert {"web", "worker", "beat", "flower", "factory"} <= seen
    assert compose["services"]["init"]["command"] == ["convhub-init"]


def test_the_init_script_runs_real_cli_commands() -> None:
    """docker/init.sh (the `init` service): migrate, add the client, add the factory with its workers."""
    parser = build_parser()
    script = INIT.read_text()
    calls = re.findall(r"\bconvhub (db upgrade|\"\$kind\" add)", script)
    assert sorted(calls) == ['"$kind" add', "db upgrade"]
    assert re.search(r"^    add clients \"\$CONVHUB_INIT_CLIENT\" --secret=", script, flags=re.M)
    assert re.search(r"^    add factories \"\$FACTORY_NAME\" --secret=\"\$CONVHUB_FACTORY_SECRET\" \"\$@\"$", script, flags=re.M)
    workers = re.search(r"CONVHUB_INIT_FACTORY_WORKERS:-([^}]+)\}", script).group(1).split(";")
    assert [w.split("|")[0] for w in workers] == ["LibreOffice Writer", "LibreOffice Calc", "LibreOffice Impress"]
    argv_sets = [
        ["db", "upgrade"],
        # --secret=VALUE: a generated secret may start with "-" (argparse would take it for an option).
        ["clients", "add", "ci-client", "--secret=-s"],
        ["factories", "add", "factory-1", "--secret=-s", *[a for w in workers for a in ("--worker", w)]],
    ]
    for argv in argv_sets:
        args = parser.parse_args(argv)
        assert callable(getattr(args, "func", None)), argv
        assert getattr(args, "secret", "-s") == "-s", argv
    for w in workers:
        spec = WorkerSpec.parse(w)
        assert (spec.application.startswith("LibreOffice"), spec.version) == (True, "7.4")
    init = (ROOT / "docker" / "server.Dockerfile").read_text()
    assert "COPY docker/init.sh /usr/local/bin/convhub-init" in init
    assert "!docker/init.sh" in (ROOT / "docker" / "server.Dockerfile.dockerignore").read_text()


SERVER_PROCESSES = ("web", "worker", "beat", "flower")


def test_topology(compose) -> None:  # type: ignore[no-untyped-def]
    services = compose["services"]
    assert {"web", "worker", "beat", "flower", "factory", "postgres", "rabbitmq", "init", "proxy"} <= set(services)
    assert services["web"]["deploy"] == {"mode": "replicated", "replicas": 2}
    assert services["beat"]["deploy"]["replicas"] == 1  # exactly one beat
    assert "--workers" in services["web"]["command"]
    assert "rabbitmq_management" in (ROOT / "docker" / "rabbitmq.Dockerfile").read_text()
    for name in ("web", "worker", "flower", "postgres", "rabbitmq", "factory", "beat", "proxy"):
        hc = services[name].get("healthcheck")
        assert hc and not hc.get("disable") and hc.get("test"), f"{name} has no health check"
    for name, svc in services.items():
        deps = svc.get("depends_on", {})
        assert set(deps) <= set(services), f"{name} depends on an unknown service"
        for vol in svc.get("volumes", []):
            source = vol.split(":", 1)[0]
            if not source.startswith((".", "/")):
                assert source in compose["volumes"], f"{name}: undeclared volume {source}"
        # Published ports: loopback only; the web replicas only behind the proxy.
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name}: {port} is not on 127.0.0.1"
    assert "ports" not in services["web"]
    assert {n for n, s in services.items() if s.get("ports")} == {"proxy", "flower"}
    for name in SERVER_PROCESSES:
        assert services[name]["depends_on"]["init"]["condition"] == "service_completed_successfully"
    assert services["factory"]["depends_on"]["init"]["condition"] == "service_completed_successfully"
    assert "http://proxy:8080" in services["factory"]["command"]
    assert services["init"]["restart"] == "no"
    # Persistent state on named volumes.
    assert any(v.startswith("pgdata:") for v in services["postgres"]["volumes"])
    assert any(v.startswith("rabbitmq:") for v in services["rabbitmq"]["volumes"])
    # Every service's environment is the same for the server processes (one anchor).
    urls = {services[n]["environment"]["CONVHUB_BROKER_URL"] for n in (*SERVER_PROCESSES, "init")}
    assert len(urls) == 1 and next(iter(urls)).startswith("amqp://")
    assert services["init"]["environment"]["CONVHUB_FACTORY_SECRET"] == services["factory"]["environment"][
        "CONVHUB_FACTORY_SECRET"
    ]


def test_dockerfiles(compose) -> None:  # type: ignore[no-untyped-def]
    built = {n: s for n, s in compose["services"].items() if "build" in s}
    assert set(built) >= {"web", "factory", "postgres", "rabbitmq", "proxy", "init"}
    for name, svc in built.items():
        build = svc["build"]
        context = COMPOSE.parent / build["context"]
        text = (context / build["dockerfile"]).read_text()
        assert text.startswith("#"), name
        # Buildable from a public base by anyone; from the local debootstrap base by scripts/.
        assert "ARG BASE=debian:bookworm-slim\nFROM ${BASE}\n" in text, name
        assert build["args"]["BASE"] == "${CONVHUB_BASE_IMAGE:-debian:bookworm-slim}", name
        assert svc["image"].startswith("localhost/convhub-"), name
        # Every file the image copies exists in its build context.
        for src in re.findall(r"^COPY (.+) \S+$", text, flags=re.M):
            for item in src.split():
                assert (context / item).exists(), f"{name}: COPY source {item} missing"
        assert "apt-get install -y --no-install-recommends" in text, name
    server = (ROOT / "docker" / "server.Dockerfile").read_text()
    assert "pip install --no-cache-dir -c constraints.txt -r /tmp/requirements.txt" in server
    assert "pip install --no-cache-dir --no-deps -c constraints.txt '.[server]'" in server
    factory = (ROOT / "docker" / "factory.Dockerfile").read_text()
    for pkg in (
        "libreoffice-writer-nogui",
        "libreoffice-calc-nogui",
        "libreoffice-impress-nogui",
        "python3-uno",
        "poppler-utils",
    ):
        assert pkg in factory
    assert "pip install --no-cache-dir ." in factory and "[server]" not in factory
