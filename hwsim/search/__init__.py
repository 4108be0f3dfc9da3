"""hwsim.search layer."""
