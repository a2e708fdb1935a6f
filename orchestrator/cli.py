"""The ``orchestrator`` command."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path

import click

from orchestrator.config import Settings


def _settings() -> Settings:
    return Settings.from_env()


def _logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # SpiffWorkflow logs every task state change at INFO: noise, and CPU on the hot path.
    logging.getLogger("spiff").setLevel(logging.WARNING)


@click.group()
def main() -> None:
    """Stone orchestrator: BPMN processes whose service tasks run as stones on Celery workers."""


@main.command()
@click.option("--host", default=None, help="bind address (ORCH_API_HOST, default 127.0.0.1)")
@click.option("--port", type=int, default=None, help="port (ORCH_API_PORT, default 8000)")
@click.option("--threads", type=int, default=None, help="worker threads (ORCH_API_THREADS)")
def api(host: str | None, port: int | None, threads: int | None) -> None:
    """Serve the REST API."""
    from waitress import serve

    from api import create_app

    settings = _settings()
    _logging(settings.log_level)
    app = create_app({"SETTINGS": settings})
    host = host or settings.api_host
    port = port or settings.api_port
    click.echo(f"API on http://{host}:{port} (docs at /docs, schema at /swagger.json)")
    serve(app, host=host, port=port, threads=threads or settings.api_threads, ident="orchestrator",
          connection_limit=1000, channel_timeout=30)


@main.command()
def engine() -> None:
    """Consume status reports and advance processes (run one or more)."""
    from orchestrator.wiring import build_engine_loop

    settings = _settings()
    _logging(settings.log_level)
    loop = build_engine_loop(settings)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    loop.run_forever(stop)


@main.command()
@click.option("--stones", required=True, help="comma-separated stone names whose queues this worker serves")
@click.option("--concurrency", "-c", type=int, default=4, show_default=True,
              help="jobs run at once (threads, or processes with --pool prefork)")
@click.option("--pool", default="threads", show_default=True,
              help="Celery pool: threads suit stones, which wait on cloud APIs; prefork for CPU-heavy stones")
@click.option("--loglevel", default=None)
def worker(stones: str, concurrency: int, pool: str, loglevel: str | None) -> None:
    """A Celery worker serving exactly the queues stone.<Name> of the given stones."""
    from orchestrator.celery_app import make_celery
    from stones.registry import load_stones

    names = [s.strip() for s in stones.split(",") if s.strip()]
    known = load_stones()
    unknown = [n for n in names if n not in known]
    if not names or unknown:
        raise click.BadParameter(f"unknown stone(s) {unknown or names}; known: {', '.join(sorted(known))}",
                                 param_hint="--stones")
    settings = _settings()
    app = make_celery(settings)
    queues = ",".join(f"stone.{n}" for n in names)
    node = f"{'+'.join(names)}@%h-{os.getpid()}"
    app.worker_main(["worker", "-Q", queues, "-c", str(concurrency), "-P", pool, "-n", node,
                     "--prefetch-multiplier=1", "-E", f"--loglevel={loglevel or settings.log_level}",
                     "--without-gossip", "--without-mingle"])


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--key", default=None, help="model key (default: the BPMN process id)")
@click.option("--name", default=None, help="model name (default: the BPMN process name)")
@click.option("--output-template", "template", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Jinja2 template of the process outputs (default: FILE with .outputs.j2, if any)")
def deploy(file: Path, key: str | None, name: str | None, template: Path | None) -> None:
    """Deploy a BPMN file: a new immutable version of its model."""
    from orchestrator.errors import OrchestratorError
    from orchestrator.service import Service
    from orchestrator.store import Store

    settings = _settings()
    service = Service(Store(settings.database_url), None, settings)
    if template is None and file.with_suffix(".outputs.j2").exists():
        template = file.with_suffix(".outputs.j2")
    try:
        dep = service.deploy(file.read_bytes(), key=key, name=name, filename=file.name,
                             output_template_text=template.read_text() if template else None)
    except OrchestratorError as exc:
        raise click.ClickException(exc.message) from exc
    click.echo(f"deployed {file.name}: key={dep.key} version={dep.version} modelId={dep.model_id} "
               f"deploymentId={dep.deployment_id}")


@main.command()
@click.option("--port", type=int, default=None, help="Flower port (ORCH_FLOWER_PORT, default 5555)")
def flower(port: int | None) -> None:
    """Flower, the Celery monitor, on the orchestrator's broker."""
    from orchestrator.celery_app import make_celery

    settings = _settings()
    app = make_celery(settings)
    argv = ["flower", f"--port={port or settings.flower_port}"]
    if "FLOWER_ADDRESS" not in os.environ:  # containers set 0.0.0.0 through the environment
        argv.append("--address=127.0.0.1")
    app.start(argv)


@main.group()
def db() -> None:
    """Database schema."""


@db.command()
@click.option("--revision", default="head", show_default=True)
def upgrade(revision: str) -> None:
    """Apply Alembic migrations."""
    from orchestrator.migrate import upgrade as do_upgrade

    settings = _settings()
    if settings.database_url.startswith("sqlite:///"):
        Path(settings.database_url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    do_upgrade(settings.database_url, revision)
    click.echo(f"database at {revision}")


@main.command()
@click.option("--stones", default=None, help="comma-separated stones to run workers for (default: all)")
@click.option("--no-flower", is_flag=True, help="do not start Flower")
def run(stones: str | None, no_flower: bool) -> None:
    """The whole stack in the foreground: API, engine, a worker per stone, Flower."""
    from orchestrator.devstack import run_stack

    names = [s.strip() for s in stones.split(",")] if stones else None
    sys.exit(run_stack(_settings(), stones=names, with_flower=not no_flower))


if __name__ == "__main__":
    main()
