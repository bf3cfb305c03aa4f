"""compose.yaml against the code: every service's command parses with the CLI it names, worker
services match the worker layout, and `docker compose config` accepts the file where compose exists."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT

yaml = pytest.importorskip("yaml", reason="pyyaml is a dev dependency: pip install -e '.[dev]'")

COMPOSE = ROOT / "compose.yaml"
SECRETS = {"NEWSFLOW_FLOWER_BASIC_AUTH": "ops:pw", "NEWSFLOW_API_TOKEN": "token"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text()))


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(compose["services"])


def parse_newsflow(argv: list[str]) -> Any:
    """Parse `newsflow SUB ...` with the real click command, without running it."""
    from workers.cli import main

    assert argv[0] == "newsflow"
    ctx = main.make_context("newsflow", argv[1:2], resilient_parsing=False)
    sub = main.get_command(ctx, argv[1])
    assert sub is not None, f"`newsflow {argv[1]}` is not a command"
    return sub.make_context(argv[1], list(argv[2:]), parent=ctx)


def parse_celery(argv: list[str]) -> Any:
    """Parse `celery -A APP SUB ...` with Celery's own click CLI, the app loaded as Celery would."""
    from celery.app.utils import find_app
    from celery.bin.base import CLIContext
    from celery.bin.celery import celery

    start = argv.index("celery") if "celery" in argv else argv.index("-m") + 1
    args = argv[start + 1 :]
    ctx = celery.make_context("celery", args, resilient_parsing=False)
    app_name = ctx.params["app"]
    assert importlib.util.find_spec(app_name.split(":")[0]) is not None, f"no module {app_name}"
    ctx.obj = CLIContext(app=find_app(app_name), no_color=True, workdir=None, quiet=True)
    name, *rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
    sub = celery.get_command(ctx, name)
    assert sub is not None, f"`celery {name}` is not a command"
    return sub.make_context(name, rest, parent=ctx)


def test_required_services(compose: dict[str, Any]) -> None:
    names = set(services(compose))
    assert {"redis", "worker-crawl", "worker-fetch", "worker-clean", "worker-enrich", "worker-index",
            "beat", "flower", "api", "metrics"} <= names  # fmt: skip


def test_redis_keeps_messages(compose: dict[str, Any]) -> None:
    cmd = [str(x) for x in services(compose)["redis"]["command"]]
    assert cmd[0] == "redis-server"
    assert cmd[cmd.index("--appendonly") + 1] == "yes"
    assert cmd[cmd.index("--maxmemory-policy") + 1] == "noeviction"


def test_worker_services_follow_the_layout(compose: dict[str, Any]) -> None:
    """One service per layout queue, each `newsflow worker Q`, which expands to the layout's command."""
    from config.settings import get_settings
    from newsflow.pipeline import task_routes
    from workers.cli.services import worker_command
    from workers.runtime import worker_specs

    settings = get_settings()
    routed = {str(r["queue"]) for r in task_routes().values()}
    # Compose runs a service per stage (each scales on its own), as `newsflow worker STAGE` does.
    layout = {q: spec for q, spec in worker_specs(settings).items() if q in routed}
    workers = {name: svc for name, svc in services(compose).items() if name.startswith("worker-")}
    assert {name.removeprefix("worker-") for name in workers} == set(layout)
    for name, svc in workers.items():
        queue = name.removeprefix("worker-")
        assert svc["command"] == ["newsflow", "worker", queue]
        parse_newsflow(svc["command"])
        argv = worker_command(settings, queue, node="compose")
        assert argv == layout[queue].command("compose", settings.log_level)
        ctx = parse_celery(argv)
        assert ctx.params["queues"] == [queue]
        from celery.concurrency import get_implementation

        assert ctx.params["pool"] is get_implementation(layout[queue].pool)
        assert ctx.params["concurrency"] == layout[queue].concurrency
    assert workers["worker-index"].get("deploy", {}).get("replicas", 1) == 1


def test_every_command_parses(compose: dict[str, Any]) -> None:
    for name, svc in services(compose).items():
        cmd = [str(x) for x in svc["command"]]
        if name == "redis" or name.startswith("redis-"):  # the Redis image's own (the sentinel profile)
            continue
        if cmd[0] == "newsflow":
            parse_newsflow(cmd)
        elif cmd[0] == "celery":
            parse_celery(cmd)
        else:
            pytest.fail(f"{name}: unexpected command {cmd}")


def test_exactly_one_beat(compose: dict[str, Any]) -> None:
    beats = [n for n, s in services(compose).items() if "beat" in [str(x) for x in s["command"]]]
    assert beats == ["beat"]
    assert services(compose)["beat"].get("deploy", {}).get("replicas", 1) == 1
    parse_celery(services(compose)["beat"]["command"])


def test_flower_and_api_need_secrets(compose: dict[str, Any]) -> None:
    svc = services(compose)
    assert "NEWSFLOW_FLOWER_BASIC_AUTH" in svc["flower"]["environment"]
    assert "NEWSFLOW_API_TOKEN" in svc["api"]["environment"]
    for name in ("flower", "api", "metrics"):
        assert all(str(p).startswith("127.0.0.1:") for p in svc[name].get("ports", [])), name


def test_image_builds_from_the_repo(compose: dict[str, Any]) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for path in ("config", "newsflow", "tasks", "workers", "pyproject.toml"):
        assert path in dockerfile and (ROOT / path).exists()
    assert all(s.get("build") == "." for n, s in services(compose).items() if n.split("-")[0] != "redis")


def _compose_cli() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_docker_compose_config_accepts_it(tmp_path: Path) -> None:
    cli = _compose_cli()
    if cli is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed (no engine is needed)")
    env = {**os.environ, **SECRETS, "DOCKER_CONFIG": str(tmp_path)}
    ok = subprocess.run([*cli, "-f", str(COMPOSE), "config", "-q"], env=env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    env.pop("NEWSFLOW_FLOWER_BASIC_AUTH")
    refused = subprocess.run([*cli, "-f", str(COMPOSE), "config", "-q"], env=env, capture_output=True, text=True)
    assert refused.returncode != 0 and "NEWSFLOW_FLOWER_BASIC_AUTH" in refused.stderr
