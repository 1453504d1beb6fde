"""The wire: the protocol (pure), one WebSocket and its reader, the socket pool, keepalives."""
