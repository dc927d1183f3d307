"""Developer tooling: compile, deploy, the devnet, gas, benchmarks and the one-machine localnet."""
