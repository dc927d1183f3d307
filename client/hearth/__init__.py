"""Hearth client SDK: chain access, IPFS, job formats, devnet and the `hearth` CLI."""

__version__ = "0.1.0"
