"""The ``espmail`` command line."""

from __future__ import annotations

from pathlib import Path

import click


@click.group()
def cli() -> None:
    """ESP Mail: outgoing bulk mail, list mail and sender authentication on AWS."""


@cli.group()
def local() -> None:
    """The embedded local stack: moto and the SendGrid double on this machine."""


@local.command()
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("out/demo"),
    show_default=True,
    help="Where the demo writes the .eml files the SendGrid double accepted.",
)
def demo(out_dir: Path) -> None:
    """Run the whole story on the embedded stack (what `make demo` runs)."""
    from espmail_cli.demo import run_demo

    raise SystemExit(run_demo(out_dir))
