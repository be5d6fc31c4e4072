"""Built-in container images for the lab (traefik/whoami, nginx, agnhost, idle images) as host programs."""
