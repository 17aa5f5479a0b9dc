"""The web console: server-rendered pages for operators, customer admins, auditors and
viewers, served by the gateway at `/console` (see `gateway.console.app`)."""
