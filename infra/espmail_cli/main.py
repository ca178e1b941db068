"""The ``espmail`` command line."""

from __future__ import annotations

from pathlib import Path

import click

from espmail_cli.context import CliContext
from espmail_cli.deploy_check import deploy_check
from espmail_cli.inbound_commands import inbound
from espmail_cli.list_commands import lists, redirects
from espmail_cli.local_serve import serve
from espmail_cli.local_state import DEFAULT_STATE_FILE
from espmail_cli.message_request_commands import requests
from espmail_cli.output import EspMailGroup
from espmail_cli.people_commands import groups, users
from espmail_cli.replay import replay


@click.group(cls=EspMailGroup)
@click.option(
    "--local",
    is_flag=True,
    help="Work against the `espmail local serve` running in this folder (found through its state file).",
)
@click.option(
    "--state-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_STATE_FILE,
    show_default=True,
    envvar="ESPMAIL_STATE_FILE",
    help="Where `local serve` writes, and --local reads, the running stack's endpoints.",
)
@click.option(
    "--stack-name",
    envvar="ESPMAIL_STACK_NAME",
    help="Work against this deployed CloudFormation stack (tables and queues from its outputs).",
)
@click.option("--region", envvar="ESPMAIL_REGION", help="The deployed stack's region (default: AWS_REGION).")
@click.version_option(package_name="espmail")
@click.pass_context
def cli(ctx: click.Context, local: bool, state_file: Path, stack_name: str | None, region: str | None) -> None:
    """ESP Mail: outgoing bulk mail, list mail and sender authentication on AWS.

    Every command works against a deployed stack (--stack-name NAME --region REGION) or against the
    embedded local stack of a running `espmail local serve` (--local).
    """
    obj = ctx.ensure_object(CliContext)
    obj.local = local
    obj.state_file = state_file
    obj.stack_name = stack_name
    obj.region = region


cli.add_command(requests)
cli.add_command(lists)
cli.add_command(redirects)
cli.add_command(users)
cli.add_command(groups)
cli.add_command(inbound)
cli.add_command(deploy_check)


@cli.group()
def local() -> None:
    """The embedded local stack: moto and the SendGrid double on this machine."""


local.add_command(serve)
local.add_command(replay)


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


if __name__ == "__main__":
    cli()
