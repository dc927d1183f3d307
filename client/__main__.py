"""`python -m client` runs the hearth CLI."""

from client.cli import main

main()
