"""`python -m hearth`: the hearth CLI."""

from hearth.cli import main

main()
