"""IPFS: the Kubo RPC client, trustless-gateway reads, verified fetch, and the embedded daemon."""
