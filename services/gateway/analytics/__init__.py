"""The analytics API (seed 003), ``/user/stats`` (seed 004) and, off the request path, the texts a key
that stores bodies sends with its usage events."""
