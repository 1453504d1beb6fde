"""The session: how queued text becomes heard speech (see :mod:`.session`)."""
