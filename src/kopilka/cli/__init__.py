"""The command line: ``kopilka`` (a Typer app in ``kopilka.cli.main``), one module per group."""
