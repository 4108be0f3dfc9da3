"""hwsim.latency layer."""
