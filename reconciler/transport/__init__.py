"""How commands and bytes reach the hosts: the executor interface (interface.py), local and
SSH executors, the host table, the OpenSSH client, and the pump that moves a stream."""
