"""paramiko adapter for the Windows guest: verified host keys, commands with deadlines, SFTP.

No Prefect here. `connect_guest(...)` -> `GuestSession` with `run`, `run_checked`, `put_file`,
`get_file`; `fetch_host_key(host, port)` for trust on first use. PowerShell text comes from
`winnodes.render.powershell`. Errors are `winnodes.errors` types (see `ssh.map_exception`).
"""

from winnodes.guest.ssh import (
    GuestSession,
    Result,
    connect_guest,
    fetch_host_key,
    host_key_fingerprint,
)

__all__ = ["GuestSession", "Result", "connect_guest", "fetch_host_key", "host_key_fingerprint"]
