"""hwsim.emulate layer."""
