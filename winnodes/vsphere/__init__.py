"""pyvmomi adapter: vCenter sessions, property-collector lookups, event-driven waits, VM operations.

No Prefect here. Every public function maps upstream exceptions to `winnodes.errors` at its boundary
(`faults.boundary`), so callers decide retry-or-fail from the exception type alone.

    session    connect(server, user, password, trust=TlsTrust(...)) -> VSphereSession (logs out)
    tls        TlsTrust: CA bundle | pinned SHA-1/SHA-256 thumbprint | insecure
    inventory  lookups by inventory path or unique name; datastore file existence
    waits      wait_for / wait_for_task / wait_for_guest_ip / wait_for_power_off
    vms        create_vm, upload_file, power_on/off, clone_vm, mark_as_template, custom attributes,
               annotation, list_templates, destroy (idempotent; build ID in the annotation)
    tools      decode_tools_version (guest.toolsVersion -> 11.0.6)
    faults     the mapping table from pyvmomi/socket/TLS/HTTP exceptions to winnodes.errors
"""

from winnodes.vsphere.session import VSphereSession, connect
from winnodes.vsphere.tls import TlsTrust

__all__ = ["TlsTrust", "VSphereSession", "connect"]
