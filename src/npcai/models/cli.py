"""CLI commands of this package (placeholder: filled by the issue that builds them)."""
import typer


def register(app: typer.Typer) -> None:
    """Add this package's commands to the root app."""
