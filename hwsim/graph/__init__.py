"""hwsim.graph layer."""
