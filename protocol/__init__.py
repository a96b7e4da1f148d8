"""What the agent and the collector must agree on: wallets, times, the heartbeat body and
its signature. Imports neither Flask, Peewee nor Docker, so a worker installs none of them."""


class ProtocolError(ValueError):
    """A value from the wire that breaks the protocol; the message is safe to show a caller."""
