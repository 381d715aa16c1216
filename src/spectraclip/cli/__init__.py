"""The typer command-line app: one module per command group, no logic here."""
