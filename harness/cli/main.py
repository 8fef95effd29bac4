"""Entry point of the ``harness`` command."""

from __future__ import annotations

from harness.tools import process_settings

# Before anything imports torch or another OpenMP runtime: bounded spinning for MD and evaluation in this
# process and the sweep workers it starts (they inherit the environment), as for the training tools; freed
# memory kept for reuse in this process (mallopt) and in those it starts (glibc reads the environment).
process_settings()

import typer

from harness import __version__
from harness.cli import al as al_cmd
from harness.cli import box as box_cmd
from harness.cli import dataset as dataset_cmd
from harness.cli import evaluate as evaluate_cmd
from harness.cli import explain as explain_cmd
from harness.cli import demo as demo_cmd
from harness.cli import label as label_cmd
from harness.cli import md as md_cmd
from harness.cli import observe as observe_cmd
from harness.cli import report as report_cmd
from harness.cli import sweep as sweep_cmd
from harness.cli import train as train_cmd
from harness.cli import transfer as transfer_cmd
from harness.cli import validate as validate_cmd
from harness.cli.common import setup_logging

app = typer.Typer(
    name="harness",
    help="Can this machine-learned potential of a molecular liquid be trusted in MD, and which "
    "training data makes it so? Build liquid cells, label them with a reference method, and (as "
    "the project grows) train committees, run MD and score them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"harness {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the harness version and exit."),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More log output (-v info, -vv debug)."),
) -> None:
    setup_logging(verbose)


app.command("box")(box_cmd.box)
app.command("label")(label_cmd.label)
app.command("demo")(demo_cmd.demo)
app.add_typer(dataset_cmd.app, name="dataset")
app.command("train")(train_cmd.train)
app.add_typer(train_cmd.models_app, name="models")
app.command("md")(md_cmd.md)
app.command("observe")(observe_cmd.observe)
app.command("score")(observe_cmd.score)
app.command("validate")(validate_cmd.validate)
app.command("evaluate")(evaluate_cmd.evaluate)
app.command("explain")(explain_cmd.explain)
app.add_typer(sweep_cmd.app, name="sweep")
app.command("report")(report_cmd.report)
app.add_typer(al_cmd.app, name="al")
app.add_typer(transfer_cmd.app, name="transfer")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
