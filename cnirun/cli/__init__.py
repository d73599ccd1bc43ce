"""Command-line front ends. Only this package imports typer."""
