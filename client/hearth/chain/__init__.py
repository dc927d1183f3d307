"""Chain access: artifacts, revert decoding, the one transaction sender, market bindings, deployments."""
