"""The agent's local REST API: wire shapes and a standard-library HTTP client over unix sockets."""
