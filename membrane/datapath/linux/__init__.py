"""Linux networking through pyroute2: namespaces, links, addresses, routes, sysctls."""
