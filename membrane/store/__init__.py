"""The cluster store: a typed etcd v3 client (JSON gateway), resource codec, and watch-driven local mirrors."""
