"""What operators see: RPC commands and their text, JSON-RPC, access, metrics, the state file."""
