"""Removing G1's answer media again: detach its CD-ROM from the VM, delete the file from the datastore.

Why this exists: the answer ISO holds the Administrator password in plain text (autounattend.xml's
AutoLogon and UserAccounts), so it must not outlive the installation, neither on the datastore nor
as a CD-ROM of the base VM, which every template of the series would inherit through the clone.
vCenter refuses to delete a file a running VM still has attached, hence detach first.

Both operations read first and converge: a CD-ROM that no longer points at the file is left alone,
a file that is already gone counts as deleted. Errors are `winnodes.errors` types (`faults.boundary`).
"""

from __future__ import annotations

from typing import Any

from pyVmomi import vim

from winnodes import errors
from winnodes.vsphere import inventory
from winnodes.vsphere.faults import boundary
from winnodes.vsphere.waits import wait_for_task


def _same_path(a: str, b: str) -> bool:
    return " ".join(a.split()) == " ".join(b.split())


def detach_iso(
    session: Any, vm: Any, ds_path: str, *, timeout: float = 600, step_id: str | None = "G1"
) -> bool:
    """Point every CD-ROM of `vm` that holds `ds_path` at an empty client device, disconnected.
    Returns True when a device was changed."""
    devices = inventory.properties(session, vm, ["config.hardware.device"])[
        "config.hardware.device"
    ]
    changes = []
    for dev in devices or []:
        backing = getattr(dev, "backing", None)
        if (
            isinstance(dev, vim.vm.device.VirtualCdrom)
            and isinstance(backing, vim.vm.device.VirtualCdrom.IsoBackingInfo)
            and _same_path(backing.fileName or "", ds_path)
        ):
            dev.backing = vim.vm.device.VirtualCdrom.RemotePassthroughBackingInfo(
                deviceName="", exclusive=False
            )
            dev.connectable = vim.vm.device.VirtualDevice.ConnectInfo(
                startConnected=False, connected=False, allowGuestControl=True
            )
            changes.append(vim.vm.device.VirtualDeviceSpec(operation="edit", device=dev))
    if not changes:
        return False
    spec = vim.vm.ConfigSpec(deviceChange=changes)
    with boundary(step_id, action=f"detach {ds_path}"):
        task = vm.ReconfigVM_Task(spec=spec)
    wait_for_task(session, task, timeout=timeout, step_id=step_id)
    return True


def delete_datastore_file(
    session: Any, datacenter: Any, ds_path: str, *, timeout: float = 600, step_id: str | None = "G1"
) -> bool:
    """Delete `[datastore] dir/file`; False when it did not exist (already deleted)."""
    fm = session.content.fileManager
    with boundary(step_id, action=f"delete {ds_path}"):
        task = fm.DeleteDatastoreFile_Task(name=ds_path, datacenter=datacenter)
    try:
        wait_for_task(session, task, timeout=timeout, step_id=step_id)
    except errors.NotFound:
        return False
    return True
