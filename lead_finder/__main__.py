"""`python -m lead_finder` runs the `lead-finder` command."""

from .cli import main

main()
