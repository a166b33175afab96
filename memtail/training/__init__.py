"""Training subset models: datasets by name, networks by name, and the trainer."""
