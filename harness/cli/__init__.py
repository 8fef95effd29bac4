"""The ``harness`` command line: thin typer wrappers over the library, one module per sub-command."""
