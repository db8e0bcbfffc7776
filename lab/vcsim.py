"""The lab's vCenter: govmomi's vSphere API simulator, built as `vcsim-lab` from `lab/go/vcsim/`.

The flows talk to vCenter with pyvmomi over SOAP/HTTPS and must not know they are in a lab. vcsim is
the real vSphere API simulator that govmomi, CAPV and Terraform test against, but as shipped it accepts
any password, serves a throw-away certificate, finishes every task at once and has no notion of a
guest. `vcsim-lab` is a small Go program on vcsim's `simulator` package (govmomi GOVMOMI_VERSION) that
fixes what matters for our procedure: HTTPS with a certificate signed by a lab CA (clients verify TLS
as in production), one user with a random password (wrong ones get InvalidLogin), an inventory that
looks like a vSphere site hosting an OpenShift cluster, and a control endpoint through which tests
inject faults, delays and session expiry, and the Windows guest twin reports what VMware Tools would.

Inventory (vcsim's standard names; exact paths also in GET /inventory and the published variables):
  /DC0                                        datacenter
  /DC0/host/DC0_C0                            cluster with hosts DC0_C0_H0..H2
  /DC0/host/DC0_C0/Resources                  the cluster's resource pool (LAB_VSPHERE_RESOURCE_POOL)
  /DC0/host/DC0_C0/Resources/DC0_C0_RP1       a child pool (LAB_VSPHERE_CHILD_RESOURCE_POOL)
  /DC0/datastore/LocalDS_0                    backed by <lab>/datastore (LAB_VSPHERE_DATASTORE_DIR)
  /DC0/network/VM Network                     standard port group
  /DC0/vm/<infra_id>                          the cluster's VM folder, holding:
    <infra_id>-rhcos                          RHCOS template (rhel8_64Guest, vmx-15, 4 CPU, 16 GiB)
    <infra_id>-worker-xxxxx (x3)              Linux workers, powered on, open-vm-tools reporting
                                              (LAB_VSPHERE_WORKERS; lab.seed gives each a Machine)
  [LocalDS_0] iso/<file>                      every stand-in ISO of lab.media (Windows and Tools)

Control endpoint (plain HTTP + JSON on 127.0.0.1:LAB_VCSIM_CONTROL_PORT, LAB_VCSIM_CONTROL_URL).
Errors answer {"error": "..."} with 400 (bad request), 404 (no such VM) or 409 (wrong state).
  GET    /healthz                   {"ok": true, "sessions": n}; 503 until the inventory is built
  GET    /inventory                 inventory paths, names, datastore dir, {"morefs": {path: moref}}
  GET    /stats                     SOAP calls answered since the last reset (stats.go): {"since",
                                    "total", "methods": {name: n}, "sessions": [{"key", "user",
                                    "user_agent", "ip", "logins", "logged_out", "first_call",
                                    "last_call", "total", "methods"}...] in order of first call,
                                    "anonymous": {...calls without a session...}, "tasks": [{"id",
                                    "name" (TaskInfo.name: CloneVm), "type", "entity",
                                    "entity_name", "session", "user", "state", "queued", "started",
                                    "completed"}...] by queue time}. Every call is counted, refused
                                    ones too; a successful Login counts for the session it creates
  DELETE /stats                     start a new count -> {"reset": true}
  GET    /faults                    {"rules": [rule...]}, each with "id" and "count" (times applied)
  POST   /faults                    add a rule: {"method": "CloneVM_Task" | "*", "fault": "TaskInProgress",
                                    "moref": "vm-42" (optional), "message": "...", "probability": 1.0,
                                    "max_count": 0 (0 = unlimited), "skip_count": 0, "delay_ms": 0,
                                    "mode": "call" | "task"} -> the rule. mode "call": the SOAP call fails
                                    with the fault (after delay_ms). mode "task": the call returns a task
                                    that runs delay_ms, then ends in state error with the fault; the
                                    default is "task" for *_Task methods (except NotAuthenticated,
                                    NoPermission, ManagedObjectNotFound), else "call". Faults by name:
                                    TaskInProgress HostCommunication HostNotConnected NotAuthenticated
                                    NoPermission InvalidState InvalidPowerState InvalidHostState
                                    SystemError Timedout InvalidArgument ManagedObjectNotFound
                                    ResourceInUse InsufficientResourcesFault DuplicateName FileNotFound
                                    NotFound ToolsUnavailable RequestCanceled InvalidDatastore
                                    CannotAccessFile MethodDisabled
  DELETE /faults                    remove all rules -> {"cleared": n}
  GET    /delays                    {"delays": {name: ms}}
  POST   /delays                    merge {name: ms} (ms <= 0 removes one). SOAP method names
                                    (RetrievePropertiesEx, CloneVM_Task) delay the response; task names
                                    (CloneVm, PowerOn, PowerOff, ReconfigVm, Destroy, CreateVm,
                                    RelocateVm) keep the task in state running for that long
  DELETE /delays                    remove all delays
  GET    /session-timeout           {"timeout": "30s" | ""}
  PUT    /session-timeout           {"timeout": "30s"} idle timeout (Go duration) for later logins; ""
                                    clears it (vCenter option config.vmacore.soap.sessionTimeout)
  POST   /sessions/invalidate       terminate every SOAP session -> {"terminated": n, "users": [...]};
                                    their next call fails with NotAuthenticated, as an expired session
  GET    /vms/<moref>/guest         the VM's power state and guest info
  POST   /vms/<moref>/guest         set guest info, as VMware Tools reports it: {"toolsRunningStatus":
                                    "guestToolsRunning", "toolsVersion": "12325" (major*1024+minor*32+
                                    patch), "toolsVersionStatus2", "toolsStatus", "guestState",
                                    "ipAddress" ("" clears it; also guest.net[0] and summary.guest),
                                    "hostName", "guestFullName", "guestId"} -> the resulting guest info.
                                    Without "toolsStatus", it is derived from the running/version
                                    status as vCenter does (toolsOk/toolsOld/toolsNotRunning/...)
  POST   /vms/<moref>/guestinfo     {"key": "guestinfo.<name>", "value": text}: what the guest's
                                    `rpctool "info-set ..."` does: config.extraConfig shows it, with
                                    no vSphere API call (no session, no fault rule applies)
  POST   /vms/<moref>/guest-shutdown power off as the guest's own shutdown does: runtime.powerState
                                    poweredOff with no client task, Tools not running, IP cleared,
                                    VmPoweredOffEvent posted; 409 if the VM is not powered on
  GET    /vms/<moref>/keys          {"keys": [{"at": unix seconds, "usb_hid_code": n, "hid_usage": n}]}:
                                    the key events VirtualMachine.PutUsbScanCodes delivered (vcsim
                                    lacks that method; vcsim-lab implements it: InvalidPowerState
                                    unless the VM is powered on, returns the number of events)

Without a session the simulator lets property reads through; vcsim-lab answers NotAuthenticated like
vCenter does (only RetrieveServiceContent, Login* and reads of the ServiceInstance itself are anonymous).

Patched simulator (lab/go/vcsim/patches/*.patch, applied in name order). govmomi GOVMOMI_VERSION's
simulator has two concurrency bugs that concurrent clients of one vCenter hit; the upstream module is
never committed or edited in place: `build(ctx)` copies it from the Go module cache into the lab's
cache (`govmomi-<version>-patched-<patch hash>`), applies the patches with `patch` (Debian package
`patch`; a patch that no longer applies is a LabError asking to update or drop it) and builds with a
private go.mod (`-modfile`) that adds `replace github.com/vmware/govmomi => <patched copy>`.
  0001 deadlock (lock-order inversion). A WaitForUpdatesEx over a filter on a ContainerView runs
       PropertyFilter.update, which holds the filter's lock while collect() locks the view; a task
       creating or destroying a VM (folderPutChild -> Registry.Put -> ContainerView.PutObject) holds
       the view's lock and notifies handlers -> PropertyFilter.UpdateObject, which took the filter's
       lock to set `sync`. E.g. 4 concurrent CloneVM_Task while a client watches a container view
       hung every later SOAP call for good (ModifyListView inverts the same way). Fix: `sync` is an
       atomic.Bool, so UpdateObject takes no lock; the order is always filter -> view -> objects.
  0002 lost updates. Each session has its own instance of the PropertyCollector singleton, all with
       the same reference, and WaitForUpdatesEx registered it as an update handler keyed by that
       reference: the last session to wait replaced the others', whose waits then ended empty (a
       watch went silent as soon as another client waited for a task). Fix: those handlers are keyed
       by reference and address; Logout unregisters the session's instance. Sessions that expire or
       are terminated keep their filters, views and collector registered (upstream leak, as before).
Both are covered by tests/lab/test_vcsim.py (concurrency section: clones and ListView changes under
a listener, each with a goroutine dump of the waiting lock holders on a hang).
  0003 datastore uploads. vcsim's /folder PUT created missing parent directories; a datastore answers
       404 (the client makes directories with FileManager.MakeDirectory). MakeDirectory of an
       existing name is FileAlreadyExists, also with createParentDirectories.
  0004 inventory consistency. Destroy_Task on a folder destroyed none of its children (it looked
       for a DestroyTask without Context, which no entity has) and removed the folder: its VMs stayed
       in their host's and pool's `vm` with a `parent` that no longer existed, and govc's find
       (mo.Ancestors) spun forever on them. MarkAsTemplate
       left the template in its pool's `vm`; MarkAsVirtualMachine joined no pool or host list.
These two are covered by tests/lab/test_vcsim.py (datastore section; "independent clients": govc's
find/ls after clones, a folder destroy, a template turned back into a VM and session invalidation).
  0005 VirtualMachine.PutUsbScanCodes (absent from the simulator): recorded per VM with its time
       (lab/go/vcsim/keys.go, `GET /vms/<moref>/keys`) so the guest twin can model the EFI
       "Press any key to boot from CD or DVD" prompt; InvalidPowerState when the VM is off.

Component interface (lab/cli.py): `build(ctx)` compiles vcsim-lab (cache key: GOVMOMI_VERSION and a hash
of the Go sources and patches) and installs govc GOVC_VERSION; `start(ctx)` returns GOVC_* and LAB_VSPHERE_* (see
`_env`); `stop(ctx)`; `status(ctx)`. `VcsimControl` is the typed client of the control endpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from lab import media
from lab.config import GOVC_VERSION, GOVMOMI_VERSION, random_suffix
from lab.paths import REPO_ROOT, LabPaths
from lab.pki import CertDir
from lab.process import (
    LabError,
    json_request,
    log_file,
    read_pid,
    require_free_port,
    start_daemon,
    stop_daemon,
)

if TYPE_CHECKING:
    from lab.cli import LabContext

NAME = "vcsim"
BINARY = "vcsim-lab"
GO_DIR = REPO_ROOT / "lab" / "go" / "vcsim"
PATCH_DIR = GO_DIR / "patches"
GOVMOMI_MODULE = "github.com/vmware/govmomi"
DATACENTER = "DC0"
ISO_FOLDER = "iso"


# ------------------------------------------------------------------------------------------ build
def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    env["GOTOOLCHAIN"] = "local"
    env["GOFLAGS"] = (env.get("GOFLAGS", "") + " -mod=mod").strip()
    return env


def patches() -> list[Path]:
    """The project's patches to govmomi's simulator, applied in name order (see the docstring)."""
    return sorted(PATCH_DIR.glob("*.patch")) if PATCH_DIR.is_dir() else []


def patch_hash() -> str:
    """Hash of the patches: names the patched copy of govmomi in the cache."""
    h = hashlib.sha256(GOVMOMI_VERSION.encode())
    for f in patches():
        h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def source_hash() -> str:
    """Hash of the Go sources and the govmomi patches, so that an edit of either rebuilds and an
    unchanged tree reuses the cache."""
    h = hashlib.sha256()
    for f in sorted(GO_DIR.iterdir()):
        if f.is_file() and (f.suffix == ".go" or f.name in ("go.mod", "go.sum")):
            h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    for f in patches():
        h.update(b"patches/" + f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def binary(paths: LabPaths) -> Path:
    return paths.bin(BINARY, f"{GOVMOMI_VERSION}-{source_hash()}")


def govc(paths: LabPaths) -> Path:
    return paths.bin("govc", GOVC_VERSION)


def _go() -> str:
    go = shutil.which("go")
    if go is None:
        raise LabError(
            "building the lab's vCenter needs Go (>= 1.25) on PATH; install it and retry"
        )
    return go


def _run_go(argv: list[str], what: str, cwd: Path, env: dict[str, str]) -> None:
    proc = subprocess.run(
        ["nice", "-n", "10", *argv], cwd=cwd, env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-25:])
        raise LabError(f"{what} failed (in {cwd}):\n{tail}")


def patched_govmomi(paths: LabPaths) -> Path:
    """A copy of the govmomi module with the project's patches applied, made once per machine in
    the cache (`govmomi-<version>-patched-<patch hash>`); the Go module cache stays pristine."""
    dest = paths.cache / f"govmomi-{GOVMOMI_VERSION}-patched-{patch_hash()}"
    if (dest / ".winnodes-patched").is_file():
        return dest
    go = _go()
    patch = shutil.which("patch")
    if patch is None:
        raise LabError(
            "building the lab's vCenter needs `patch` (Debian package patch) to apply "
            f"{PATCH_DIR.relative_to(REPO_ROOT)}/*.patch to govmomi; install it and retry"
        )
    # `go mod download` finds the module in the Go module cache (or fetches it from the proxy).
    proc = subprocess.run(
        [go, "mod", "download", "-json", f"{GOVMOMI_MODULE}@{GOVMOMI_VERSION}"],
        cwd=GO_DIR,
        env=_go_env(),
        capture_output=True,
        text=True,
    )
    try:
        src = Path(json.loads(proc.stdout)["Dir"])
    except (ValueError, KeyError):
        raise LabError(
            f"`go mod download {GOVMOMI_MODULE}@{GOVMOMI_VERSION}` failed:\n"
            f"{(proc.stdout + proc.stderr)[-2000:]}"
        ) from None
    tmp = dest.with_name(f"{dest.name}.tmp{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(src, tmp, copy_function=shutil.copyfile)  # files writable, unlike the cache's
    for d, _dirs, _files in os.walk(tmp):
        os.chmod(d, 0o755)
    for p in patches():
        for dry in (True, False):
            argv = [patch, "-p1", "--batch", "--forward", "--quiet", "-i", str(p)]
            res = subprocess.run(
                argv + (["--dry-run"] if dry else []), cwd=tmp, capture_output=True, text=True
            )
            if res.returncode != 0:
                shutil.rmtree(tmp, ignore_errors=True)
                raise LabError(
                    f"{p.relative_to(REPO_ROOT)} does not apply to govmomi {GOVMOMI_VERSION} "
                    f"({src}): update the patch for this version or drop it if upstream fixed the "
                    f"bug:\n{(res.stdout + res.stderr)[-2000:]}"
                )
    (tmp / ".winnodes-patched").write_text("".join(f"{p.name}\n" for p in patches()))
    try:
        tmp.rename(dest)
    except OSError:  # another build made it meanwhile
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def build(ctx: LabContext) -> None:
    """Compile vcsim-lab (against govmomi with the project's patches) and install govc into the
    cache, unless already there."""
    target = binary(ctx.paths)
    if not target.is_file():
        go = _go()
        print(f"  building {BINARY} (govmomi {GOVMOMI_VERSION}, sources {source_hash()}) ...")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"{target.name}.tmp{os.getpid()}")
        t0 = time.monotonic()
        argv = [go, "build", "-trimpath", "-o", str(tmp)]
        modfile_dir: Path | None = None
        if patches():
            # A go.mod of our own (same requirements + a replace of govmomi by the patched copy),
            # passed with -modfile so that lab/go/vcsim keeps its plain go.mod.
            govmomi = patched_govmomi(ctx.paths)
            modfile_dir = target.parent / f"modfile.{os.getpid()}"
            modfile_dir.mkdir(parents=True, exist_ok=True)
            (modfile_dir / "go.mod").write_text(
                (GO_DIR / "go.mod").read_text() + f"\nreplace {GOVMOMI_MODULE} => {govmomi}\n"
            )
            shutil.copyfile(GO_DIR / "go.sum", modfile_dir / "go.sum")
            argv.append(f"-modfile={modfile_dir / 'go.mod'}")
        try:
            _run_go([*argv, "."], f"`go build` of {BINARY}", GO_DIR, _go_env())
        finally:
            if modfile_dir is not None:
                shutil.rmtree(modfile_dir, ignore_errors=True)
        tmp.replace(target)
        print(f"  built {target} in {time.monotonic() - t0:.0f}s")
    tool = govc(ctx.paths)
    if not tool.is_file():
        go = _go()
        print(f"  installing govc {GOVC_VERSION} into {tool.parent} ...")
        tool.parent.mkdir(parents=True, exist_ok=True)
        env = _go_env() | {"GOBIN": str(tool.parent)}
        t0 = time.monotonic()
        _run_go(
            [go, "install", f"github.com/vmware/govmomi/govc@{GOVC_VERSION}"],
            f"`go install` of govc {GOVC_VERSION}",
            tool.parent,
            env,
        )
        print(f"  installed govc in {time.monotonic() - t0:.0f}s")


# -------------------------------------------------------------------------------------------- PKI
def _pki_dir(paths: LabPaths) -> Path:
    return paths.pki / "vcsim"


def ca_file(paths: LabPaths) -> Path:
    return _pki_dir(paths) / "ca.crt"


def ensure_pki(paths: LabPaths, host: str) -> tuple[Path, Path, Path]:
    """A lab CA and a server certificate for `host` (IP SAN) and localhost, made once per run dir.
    Returns (ca.crt, server.crt, server.key)."""
    certs = CertDir(_pki_dir(paths))
    ca_crt = certs.ca("ca", "winnodes lab vCenter CA", orgs=("winnodes lab",))
    srv_crt, srv_key = certs.leaf("server", "ca", host, server=True, dns=["localhost"], ips=[host])
    return ca_crt, srv_crt, srv_key


def thumbprint(cert_pem: Path) -> str:
    """SHA-1 of the certificate, vSphere style (AA:BB:...)."""
    cert = x509.load_pem_x509_certificate(cert_pem.read_bytes())
    return ":".join(f"{b:02X}" for b in cert.fingerprint(hashes.SHA1()))


def password_file(paths: LabPaths) -> Path:
    return _pki_dir(paths) / "password"


def ensure_password(paths: LabPaths) -> str:
    """The vSphere user's password: random, made once per run directory."""
    f = password_file(paths)
    if not f.exists():
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(f"Lab-{random_suffix(16)}!\n")
        f.chmod(0o600)
    return f.read_text().strip()


# ---------------------------------------------------------------------------------------- control
class VcsimControlError(LabError):
    """The control endpoint refused a request (status and the server's message)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"vcsim control: HTTP {status}: {message}")
        self.status = status
        self.message = message


_SNAKE_GUEST = {
    "tools_running_status": "toolsRunningStatus",
    "tools_version": "toolsVersion",
    "tools_version_status2": "toolsVersionStatus2",
    "tools_status": "toolsStatus",
    "guest_state": "guestState",
    "ip_address": "ipAddress",
    "host_name": "hostName",
    "guest_full_name": "guestFullName",
    "guest_id": "guestId",
}


def encode_tools_version(version: str) -> str:
    """VMware's encoded Tools version: "12.1.5" -> "12325" (major*1024 + minor*32 + patch)."""
    parts = [int(p) for p in version.split(".")[:3]] + [0, 0]
    return str(parts[0] * 1024 + parts[1] * 32 + parts[2])


class VcsimControl:
    """Typed client of vcsim-lab's control endpoint (see the module docstring)."""

    def __init__(self, base_url: str, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    @classmethod
    def from_env(cls, env: dict[str, str]) -> VcsimControl:
        try:
            return cls(env["LAB_VCSIM_CONTROL_URL"])
        except KeyError as exc:
            raise LabError("LAB_VCSIM_CONTROL_URL is not set: start the lab's vcsim first") from exc

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            return json_request(self.base_url + path, method, body, self.timeout)
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                message = str(json.loads(raw).get("error", raw.decode(errors="replace")))
            except (ValueError, AttributeError):
                message = raw.decode(errors="replace")
            raise VcsimControlError(exc.code, message) from None
        except urllib.error.URLError as exc:
            raise LabError(
                f"vcsim control endpoint {self.base_url} unreachable ({exc.reason}); "
                "is the lab up? (`python -m lab status`)"
            ) from None

    # health and inventory
    def health(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/healthz")
        return result

    def inventory(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/inventory")
        return result

    # call accounting
    def stats(self) -> dict[str, Any]:
        """SOAP calls per method and per session, and the task timeline, since the last reset."""
        result: dict[str, Any] = self._call("GET", "/stats")
        return result

    def reset_stats(self) -> None:
        self._call("DELETE", "/stats")

    # faults
    def add_fault(
        self,
        method: str,
        fault: str,
        *,
        moref: str | None = None,
        message: str | None = None,
        probability: float = 1.0,
        max_count: int = 0,
        skip_count: int = 0,
        delay_ms: int = 0,
        mode: str | None = None,
    ) -> dict[str, Any]:
        """Make `method` (a SOAP method name or "*") fail with `fault`; see POST /faults."""
        body: dict[str, Any] = {
            "method": method,
            "fault": fault,
            "probability": probability,
            "max_count": max_count,
            "skip_count": skip_count,
            "delay_ms": delay_ms,
        }
        if moref:
            body["moref"] = moref
        if message:
            body["message"] = message
        if mode:
            body["mode"] = mode
        result: dict[str, Any] = self._call("POST", "/faults", body)
        return result

    def list_faults(self) -> list[dict[str, Any]]:
        rules: list[dict[str, Any]] = self._call("GET", "/faults")["rules"]
        return rules

    def clear_faults(self) -> int:
        return int(self._call("DELETE", "/faults")["cleared"])

    # delays
    def set_delays(self, delays: dict[str, int] | None = None, **more: int) -> dict[str, int]:
        """Add delays in ms: SOAP method names delay the response, task names (CloneVm, PowerOn,
        ReconfigVm, ...) keep the task running. Returns all delays in force."""
        body = dict(delays or {}) | more
        result: dict[str, int] = self._call("POST", "/delays", body)["delays"]
        return result

    def delays(self) -> dict[str, int]:
        result: dict[str, int] = self._call("GET", "/delays")["delays"]
        return result

    def clear_delays(self) -> None:
        self._call("DELETE", "/delays")

    # sessions
    def set_session_timeout(self, timeout: str | float | None) -> None:
        """Idle session timeout for later logins: a Go duration ("30s") or seconds; None clears."""
        if timeout is None:
            value = ""
        elif isinstance(timeout, int | float):
            value = f"{int(timeout * 1000)}ms"
        else:
            value = timeout
        self._call("PUT", "/session-timeout", {"timeout": value})

    def session_timeout(self) -> str:
        return str(self._call("GET", "/session-timeout")["timeout"])

    def invalidate_sessions(self) -> int:
        """Terminate every current session (as if they expired); returns how many."""
        return int(self._call("POST", "/sessions/invalidate")["terminated"])

    # guests
    def get_guest(self, moref: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/vms/{moref}/guest")
        return result

    def set_guest(self, moref: str, **fields: str | int) -> dict[str, Any]:
        """Report guest info as VMware Tools would, e.g. set_guest("vm-42",
        toolsRunningStatus="guestToolsRunning", ipAddress="127.77.0.5"); snake_case names work too."""
        body = {_SNAKE_GUEST.get(k, k): str(v) for k, v in fields.items()}
        result: dict[str, Any] = self._call("POST", f"/vms/{moref}/guest", body)
        return result

    def keys(self, moref: str) -> list[dict[str, Any]]:
        """Key events delivered to the VM by PutUsbScanCodes, oldest first ("at": Unix seconds)."""
        result: list[dict[str, Any]] = self._call("GET", f"/vms/{moref}/keys")["keys"] or []
        return result

    def set_guestinfo(self, moref: str, key: str, value: str) -> dict[str, Any]:
        """`rpctool "info-set <key> <value>"` in the guest: config.extraConfig shows the variable;
        no vSphere API call (fault rules and sessions do not apply)."""
        result: dict[str, Any] = self._call(
            "POST", f"/vms/{moref}/guestinfo", {"key": key, "value": value}
        )
        return result

    def guest_shutdown(self, moref: str) -> dict[str, Any]:
        """Power the VM off as its guest OS's own shutdown does (no task; VmPoweredOffEvent)."""
        result: dict[str, Any] = self._call("POST", f"/vms/{moref}/guest-shutdown")
        return result


def max_in_flight(tasks: list[dict[str, Any]], name: str | None = None) -> int:
    """Most tasks (named `name`, e.g. "CloneVm", or all) running at once in a GET /stats task
    timeline: a task is in flight from its start until its completion (still running: until now)."""
    edges: list[tuple[str, int]] = []
    for t in tasks:
        if (name is None or t["name"] == name) and t.get("started"):
            edges.append((t["started"], 1))
            if t.get("completed"):
                edges.append((t["completed"], -1))
    # At equal times ends come first, so back-to-back tasks do not count as overlapping.
    edges.sort(key=lambda e: (_ts(e[0]), e[1]))
    running = peak = 0
    for _, delta in edges:
        running += delta
        peak = max(peak, running)
    return peak


def _ts(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def stats(ctx: LabContext) -> dict[str, Any]:
    """The lab vCenter's call accounting (GET /stats): calls per method and session, tasks."""
    return VcsimControl(control_url(ctx)).stats()


def reset_stats(ctx: LabContext) -> None:
    """Start a new count (DELETE /stats)."""
    VcsimControl(control_url(ctx)).reset_stats()


# -------------------------------------------------------------------------------------- component
def control_url(ctx: LabContext) -> str:
    return f"http://{ctx.cfg.host}:{ctx.cfg.vcsim_control_port}"


def _healthy(ctx: LabContext) -> bool:
    try:
        return bool(VcsimControl(control_url(ctx), timeout=2).health().get("ok"))
    except LabError:
        return False


def _upload_media(ctx: LabContext, datastore_dir: Path) -> dict[str, str]:
    """Put every stand-in ISO into the datastore's iso/ folder; returns file name -> datastore path."""
    iso_dir = datastore_dir / ISO_FOLDER
    iso_dir.mkdir(parents=True, exist_ok=True)
    out: dict[str, str] = {}
    items: list[tuple[str, Any]] = [(m.file_name, m) for m in media.WINDOWS_MEDIA.values()]
    items += [(m.file_name, m) for m in media.TOOLS_MEDIA.values()]
    for file_name, m in items:
        built = ctx.paths.media / file_name
        # Rebuilt every start (tiny), so a lab directory never keeps stand-ins of an older layout.
        if isinstance(m, media.WindowsMedia):
            media.build_windows_iso(built, m)
        else:
            media.build_tools_iso(built, m)
        dest = iso_dir / file_name
        if not dest.exists() or dest.read_bytes() != built.read_bytes():
            shutil.copyfile(built, dest)
        out[file_name] = f"[{_datastore_name()}] {ISO_FOLDER}/{file_name}"
    # Offline OpenSSH sources (issue 9): the Win32-OpenSSH MSI and a Features-on-Demand ISO.
    fod = ctx.paths.media / media.FOD_ISO
    if not fod.exists():
        media.build_fod_iso(fod)
    for file_name, src in ((media.FOD_ISO, fod), (media.OPENSSH_MSI, None)):
        dest = iso_dir / file_name
        if not dest.exists():
            if src is None:
                dest.write_bytes(media.OPENSSH_MSI_BYTES)
            else:
                shutil.copyfile(src, dest)
        out[file_name] = f"[{_datastore_name()}] {ISO_FOLDER}/{file_name}"
    return out


def _datastore_name() -> str:
    return "LocalDS_0"


def _env(ctx: LabContext, inv: dict[str, Any], isos: dict[str, str]) -> dict[str, str]:
    ca = ca_file(ctx.paths)
    server = f"{ctx.cfg.host}:{ctx.cfg.vcsim_port}"
    password = ensure_password(ctx.paths)
    return {
        "GOVC_URL": f"https://{server}/sdk",
        "GOVC_USERNAME": ctx.cfg.vsphere_user,
        "GOVC_PASSWORD": password,
        "GOVC_TLS_CA_CERTS": str(ca),
        "GOVC_DATACENTER": inv["datacenter"].lstrip("/"),
        "LAB_GOVC": str(govc(ctx.paths)),
        "LAB_VCSIM_CONTROL_URL": control_url(ctx),
        "LAB_VSPHERE_SERVER": server,
        "LAB_VSPHERE_USERNAME": ctx.cfg.vsphere_user,
        "LAB_VSPHERE_PASSWORD": password,
        "LAB_VSPHERE_CA_FILE": str(ca),
        "LAB_VSPHERE_THUMBPRINT": thumbprint(_pki_dir(ctx.paths) / "server.crt"),
        "LAB_VSPHERE_DATACENTER": inv["datacenter"].lstrip("/"),
        "LAB_VSPHERE_CLUSTER": inv["cluster"].rsplit("/", 1)[-1],
        "LAB_VSPHERE_DATASTORE": inv["datastore_name"],
        "LAB_VSPHERE_DATASTORE_DIR": inv["datastore_dir"],
        "LAB_VSPHERE_NETWORK": inv["network_name"],
        "LAB_VSPHERE_FOLDER": inv["folder"],
        "LAB_VSPHERE_RESOURCE_POOL": inv["resource_pool"],
        "LAB_VSPHERE_CHILD_RESOURCE_POOL": inv.get("child_resource_pool", ""),
        "LAB_VSPHERE_TEMPLATE": inv["template"].rsplit("/", 1)[-1],
        # the Linux worker VMs (name=guest IP, comma-separated): lab.seed gives each a Machine
        "LAB_VSPHERE_WORKERS": ",".join(
            f"{w.rsplit('/', 1)[-1]}={(inv.get('worker_ips') or {}).get(w.rsplit('/', 1)[-1], '')}"
            for w in inv.get("workers") or []
        ),
        "LAB_WINDOWS_ISO_OCP49": isos[media.WINDOWS_MEDIA["ocp-4.9"].file_name],
        "LAB_WINDOWS_ISO_CURRENT": isos[media.WINDOWS_MEDIA["current"].file_name],
        "LAB_WINDOWS_ISO_2025": isos[media.WINDOWS_MEDIA["current-2025"].file_name],
        "LAB_TOOLS_ISO": isos[media.TOOLS_MEDIA["current"].file_name],
        "LAB_TOOLS_ISO_OLD": isos[media.TOOLS_MEDIA["old"].file_name],
        "LAB_OPENSSH_MSI": isos[media.OPENSSH_MSI],
        "LAB_FOD_ISO": isos[media.FOD_ISO],
    }


def start(ctx: LabContext) -> dict[str, str]:
    """Start vcsim-lab (or find it running for this run dir) and return its variables."""
    paths, cfg = ctx.paths, ctx.cfg
    paths.ensure()
    if read_pid(paths, NAME) is None or not _healthy(ctx):
        stop_daemon(paths, NAME)  # a stale pid file or a hung process of ours
        require_free_port(cfg.host, cfg.vcsim_port, "vcsim (vSphere API)", "LAB_VCSIM_PORT")
        require_free_port(
            cfg.host, cfg.vcsim_control_port, "vcsim (control endpoint)", "LAB_VCSIM_CONTROL_PORT"
        )
        build(ctx)
        _ca, crt, key = ensure_pki(paths, cfg.host)
        ensure_password(paths)
        # The inventory is rebuilt at every start: files of VMs of a previous vcsim are stale.
        if paths.datastore.exists():
            shutil.rmtree(paths.datastore)
        paths.datastore.mkdir(parents=True)
        argv = [
            str(binary(paths)),
            "-listen", f"{cfg.host}:{cfg.vcsim_port}",
            "-control", f"{cfg.host}:{cfg.vcsim_control_port}",
            "-tls-cert", str(crt),
            "-tls-key", str(key),
            "-username", cfg.vsphere_user,
            "-password-file", str(password_file(paths)),
            "-datastore-dir", str(paths.datastore),
            "-infra-id", ctx.infra_id,
        ]  # fmt: skip
        start_daemon(paths, NAME, argv, ready=lambda: _healthy(ctx), timeout=60)
    inv = VcsimControl(control_url(ctx)).inventory()
    isos = _upload_media(ctx, Path(inv["datastore_dir"]))
    return _env(ctx, inv, isos)


def stop(ctx: LabContext) -> None:
    stop_daemon(ctx.paths, NAME)


def status(ctx: LabContext) -> str:
    pid = read_pid(ctx.paths, NAME)
    if pid is None:
        return "stopped"
    if not _healthy(ctx):
        return f"unhealthy (pid {pid}; control endpoint not answering; see {log_file(ctx.paths, NAME)})"
    return (
        f"running (pid {pid}; https://{ctx.cfg.host}:{ctx.cfg.vcsim_port}/sdk, "
        f"control {control_url(ctx)})"
    )
