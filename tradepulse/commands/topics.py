"""`tradepulse topics create|list|describe`: the log's topics as documented and as the broker has them."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from tradepulse.commands.output import fail

app = typer.Typer(no_args_is_help=True)
console = Console()


@app.command()
def create() -> None:
    """Create every documented topic that does not exist yet (existing topics are left as they are)."""
    from aiokafka.errors import KafkaError

    from streams.admin import ensure_topics
    from tradepulse.logs import configure_logging
    from tradepulse.settings import get_settings

    configure_logging()
    settings = get_settings()
    try:
        created = ensure_topics(settings)
    except KafkaError as exc:
        raise fail(f"cannot create topics on {settings.kafka.bootstrap_servers}: {exc}") from exc
    console.print(f"created {len(created)} topics" + (": " + ", ".join(created) if created else " (all existed)"))


@app.command("list")
def list_topics(
    prefix: str | None = typer.Option(
        None, help="only topics starting with this (default: the configured topic prefix)"
    ),
) -> None:
    """Name, partitions, cleanup policy and retention of the broker's topics."""
    from aiokafka.errors import KafkaError

    from streams.admin import describe_topics
    from tradepulse.settings import get_settings

    settings = get_settings()
    try:
        topics = describe_topics(settings, prefix)
    except KafkaError as exc:
        raise fail(f"cannot reach Kafka at {settings.kafka.bootstrap_servers}: {exc}") from exc
    table = Table(title=f"topics on {settings.kafka.bootstrap_servers}")
    table.add_column("topic")
    table.add_column("partitions", justify="right")
    table.add_column("cleanup.policy")
    table.add_column("retention", justify="right")
    for topic in topics:
        retention = "forever" if topic.retention_ms < 0 else f"{topic.retention_ms / 86_400_000:g} d"
        table.add_row(topic.name, str(topic.partitions), topic.cleanup_policy, retention)
    console.print(table)


app.command("describe", help="Same as `list`: what the broker reports for each topic.")(list_topics)
