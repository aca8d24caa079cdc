"""The command line (`chatgw`) and its dev tooling: the terminal chat, the embedded Redis,
the demo agent, agents as code. The HTTP edge is the rest of `gateway/`."""

from gateway.cli.main import main, server_config

__all__ = ["main", "server_config"]
