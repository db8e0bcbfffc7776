"""The Windows Update Agent API (`Microsoft.Update.Session` and friends) of the guest twin.

What a golden-image build meets when it patches Windows (docs/lab-fidelity.md, "Day 2: Windows
updates"):
- which updates a search offers depends on the OS build and UBR (`CATALOGUE`): a servicing stack
  update (SSU) first, a cumulative update (LCU) only once its SSU is installed (WUA evaluates
  prerequisites before offering an update), a later LCU only on the build the earlier one produced;
- installing an LCU needs a restart: it stays pending (UBR unchanged, `RebootRequired`) until the
  guest restarts, and nothing more is offered while a restart is pending; the new UBR and hotfix
  appear at the next boot (`finish_pending`, called by the boot);
- the source must be reachable: `ServerSelection` 2 is Microsoft Update, 1 (or 0 with the
  `UseWUServer` policy) the WSUS server of the `WUServer` policy. Which sources answer is the lab's
  network (`network.json` next to the guests' directories; Microsoft Update reachable, no WSUS, when
  absent); an unreachable one fails the search with the HRESULT Windows gives
  (0x8024402C name not resolved, 0x80072EE2 timed out) as a COMException.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lab.guest.emulator import parser as ast
from lab.guest.emulator.interp import ErrorRecord, Interp, StatementError, as_list, to_number
from lab.guest.emulator.objects import PSObject, to_text
from lab.guest.state import GuestState, HotFix

WU_E_PT_WINHTTP_NAME_NOT_RESOLVED = 0x8024402C
ERROR_INTERNET_TIMEOUT = 0x80072EE2
POLICY = "hklm:\\software\\policies\\microsoft\\windows\\windowsupdate"


@dataclass(frozen=True)
class Update:
    kb: str  # without "KB"
    title: str
    build: int
    below_ubr: int  # offered while the UBR is lower than this
    from_ubr: int = 0  # ... and at least this
    sets_ubr: int = 0  # the UBR after the restart (0: unchanged)
    reboot: bool = False
    requires: tuple[str, ...] = ()  # KBs that must be installed first (SSU before LCU)


_LCU = "Cumulative Update for Microsoft server operating system version 21H2 for x64-based Systems"
CATALOGUE: tuple[Update, ...] = (
    Update(
        "5011570",
        "2022-03 Servicing Stack Update for Microsoft server operating system version 21H2 for "
        "x64-based Systems (KB5011570)",
        20348,
        below_ubr=681,
    ),
    Update(
        "5012637",
        f"2022-04 {_LCU.replace('Cumulative Update', 'Cumulative Update Preview')} (KB5012637)",
        20348,
        below_ubr=681,
        sets_ubr=681,
        reboot=True,
        requires=("KB5011570",),
    ),
    Update(
        "5014678",
        f"2022-06 {_LCU} (KB5014678)",
        20348,
        below_ubr=768,
        from_ubr=681,
        sets_ubr=768,
        reboot=True,
    ),
)


def offered(state: GuestState) -> list[Update]:
    """What a search finds now (nothing while a restart is pending)."""
    if state.pending_updates:
        return []
    have = {h.hotfix_id.upper() for h in state.hotfixes}
    return [
        u
        for u in CATALOGUE
        if u.build == state.build
        and u.from_ubr <= state.ubr < u.below_ubr
        and f"KB{u.kb}" not in have
        and all(r in have for r in u.requires)
    ]


def finish_pending(state: GuestState) -> list[str]:
    """At boot: updates installed before the restart take effect (UBR, hotfix list)."""
    done = []
    for kb in state.pending_updates:
        upd = next((u for u in CATALOGUE if f"KB{u.kb}" == kb), None)
        if upd is None:
            continue
        if upd.sets_ubr:
            state.ubr = max(state.ubr, upd.sets_ubr)
        state.hotfixes.append(HotFix(kb, "Security Update", ""))
        done.append(kb)
    if done:
        state.log.append(
            f"boot: updates {', '.join(done)} completed; build {state.build}.{state.ubr}"
        )
    state.pending_updates = []
    return done


# -- COM objects ----------------------------------------------------------------------------------
def _com_error(interp: Interp, node: ast.Node, hresult: int, text: str = "") -> StatementError:
    message = text or f"Exception from HRESULT: 0x{hresult:08X}"
    rec: ErrorRecord = interp.record_for(
        node, message, "System.Runtime.InteropServices.COMException", "NotSpecified", "",
        "COMException",
    )  # fmt: skip
    rec.hresult = hresult - (1 << 32) if hresult & 0x80000000 else hresult
    return StatementError(rec)


class ComObject(PSObject):
    """A COM object: properties as a PSObject, methods answered by `com_call`."""

    def com_call(self, interp: Interp, name: str, args: list[Any], node: ast.Node) -> Any:
        raise StatementError(
            interp.record_for(
                node,
                f"Method invocation failed because [System.__ComObject#{{{self.type_name}}}] "
                f"does not contain a method named '{name}'.",
                "MethodNotFound",
                "InvalidOperation",
            )
        )


class UpdateColl(list[Any]):
    """Microsoft.Update.UpdateColl: enumerable, `Count`, `Add` returns the index."""

    type_name = "IUpdateCollection"

    def com_call(self, interp: Interp, name: str, args: list[Any], node: ast.Node) -> Any:
        if name.lower() == "add" and args:
            self.append(args[0])
            return len(self) - 1
        if name.lower() == "clear":
            self.clear()
            return None
        return ComObject(self.type_name, {}).com_call(interp, name, args, node)


def _update_object(u: Update) -> ComObject:
    return IUpdate(
        "IUpdate",
        {
            "Title": u.title,
            "KBArticleIDs": [u.kb],
            "EulaAccepted": False,
            "IsDownloaded": False,
            "IsInstalled": False,
            "RebootRequired": False,
            "InstallationBehavior": PSObject("IInstallationBehavior", {"RebootBehavior": 1 if u.reboot else 0}),
            "Type": 1,
        },
    )  # fmt: skip


class IUpdate(ComObject):
    def com_call(self, interp: Interp, name: str, args: list[Any], node: ast.Node) -> Any:
        if name.lower() == "accepteula":
            self.set("EulaAccepted", True)
            return None
        return super().com_call(interp, name, args, node)


class UpdateSession(ComObject):
    def com_call(self, interp: Interp, name: str, args: list[Any], node: ast.Node) -> Any:
        low = name.lower()
        if low == "createupdatesearcher":
            return Searcher("IUpdateSearcher", {"ServerSelection": 0, "Online": True})
        if low == "createupdatedownloader":
            return Downloader("IUpdateDownloader", {"Updates": None})
        if low == "createupdateinstaller":
            return Installer("IUpdateInstaller", {"Updates": None, "IsBusy": False})
        return super().com_call(interp, name, args, node)


def _network(interp: Interp) -> dict[str, Any]:
    path = interp.disk.root.parent / "network.json"
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


def _policy(state: GuestState) -> dict[str, Any]:
    values = dict(state.registry.get(POLICY, {}))
    values.update(state.registry.get(POLICY + "\\au", {}))
    return values


class Searcher(ComObject):
    def com_call(self, interp: Interp, name: str, args: list[Any], node: ast.Node) -> Any:
        if name.lower() != "search":
            return super().com_call(interp, name, args, node)
        criteria = to_text(args[0]) if args else ""
        if "isinstalled=0" not in criteria.replace(" ", "").lower():
            raise _com_error(interp, node, 0x80240032, "Exception from HRESULT: 0x80240032")
        state = interp.read_state()
        selection = int(to_number(self.get("ServerSelection") or 0))
        policy = _policy(state)
        use_wsus = selection == 1 or (selection == 0 and str(policy.get("UseWUServer", 0)) == "1")
        net = _network(interp)
        if use_wsus:
            server = (
                str(policy.get("WUServer", "")) if str(policy.get("UseWUServer", 0)) == "1" else ""
            )
            reach = (
                dict(net.get("wsus", {})).get(server.rstrip("/"), "unresolved")
                if server
                else "unresolved"
            )
        else:
            reach = str(net.get("windows_update", "reachable"))
        if reach == "unresolved":
            raise _com_error(interp, node, WU_E_PT_WINHTTP_NAME_NOT_RESOLVED)
        if reach == "timeout":
            raise _com_error(interp, node, ERROR_INTERNET_TIMEOUT)
        found = [_update_object(u) for u in offered(state)]
        return PSObject("ISearchResult", {"ResultCode": 2, "Updates": found, "Warnings": []})


def _updates(obj: ComObject, interp: Interp, node: ast.Node) -> list[Any]:
    ups = obj.get("Updates")
    if ups is None:
        raise _com_error(interp, node, 0x80240024)  # WU_E_NO_UPDATE: no updates to act on
    return as_list(ups)


class Downloader(ComObject):
    def com_call(self, interp: Interp, name: str, args: list[Any], node: ast.Node) -> Any:
        if name.lower() != "download":
            return super().com_call(interp, name, args, node)
        for u in _updates(self, interp, node):
            u.set("IsDownloaded", True)
        return PSObject("IDownloadResult", {"ResultCode": 2, "HResult": 0})


class Installer(ComObject):
    def com_call(self, interp: Interp, name: str, args: list[Any], node: ast.Node) -> Any:
        if name.lower() != "install":
            return super().com_call(interp, name, args, node)
        ups = _updates(self, interp, node)
        results: list[int] = []
        reboot = False
        with interp.edit_state() as st:
            avail = {f"KB{u.kb}": u for u in offered(st)}
            for obj in ups:
                kb = f"KB{as_list(obj.get('KBArticleIDs'))[0]}"
                upd = avail.get(kb)
                if upd is None or not obj.get("EulaAccepted"):
                    results.append(4)
                    continue
                if not obj.get("IsDownloaded"):
                    results.append(4)
                    continue
                if upd.reboot:
                    st.pending_updates.append(kb)
                    obj.set("RebootRequired", True)
                    reboot = True
                else:
                    st.hotfixes.append(HotFix(kb, "Update", ""))
                    obj.set("IsInstalled", True)
                results.append(2)
            st.log.append(
                f"Windows Update: installed {', '.join(avail)}; restart required {reboot}"
            )
        code = 2 if all(r == 2 for r in results) else (3 if 2 in results else 4)
        return InstallResult(
            "IInstallationResult",
            {"ResultCode": code, "HResult": 0 if code == 2 else -2145124329, "RebootRequired": reboot},
            results,
        )  # fmt: skip


class InstallResult(ComObject):
    def __init__(self, type_name: str, props: dict[str, Any], per_update: list[int]) -> None:
        super().__init__(type_name, props)
        self.per_update = per_update

    def com_call(self, interp: Interp, name: str, args: list[Any], node: ast.Node) -> Any:
        if name.lower() == "getupdateresult" and args:
            i = int(to_number(args[0]))
            if not 0 <= i < len(self.per_update):
                raise _com_error(interp, node, 0x80070057)  # E_INVALIDARG
            return PSObject(
                "IUpdateInstallationResult", {"ResultCode": self.per_update[i], "HResult": 0}
            )
        return super().com_call(interp, name, args, node)


PROGIDS: dict[str, Callable[[], Any]] = {
    "microsoft.update.session": lambda: UpdateSession(
        "IUpdateSession", {"ClientApplicationID": ""}
    ),
    "microsoft.update.updatecoll": UpdateColl,
}


def new_com_object(prog_id: str) -> Any:
    """The object for a ProgID, or None (class not registered)."""
    factory = PROGIDS.get(prog_id.lower())
    return factory() if factory else None
