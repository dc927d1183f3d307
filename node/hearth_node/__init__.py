"""Hearth provider node: watcher -> guardian -> processor -> runner -> submitter, journal, HTTP API."""
