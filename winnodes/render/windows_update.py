"""G6u Windows updates as PowerShell (pure): the Windows Update Agent API, and what it answers.

The current WMCO golden-image guide asks for "Install Windows OS updates" in several rounds with
restarts. We use the Windows Update Agent COM API (`Microsoft.Update.Session`), built into every
Windows Server, rather than the PSWindowsUpdate module: the module comes from the PowerShell Gallery,
which an offline or WSUS-only site cannot reach. One round is: search
`IsInstalled=0 and Type='Software'` -> accept EULAs -> download -> install, reporting the KBs found
and installed, the installer's result code and HRESULT, and whether a restart is required. The task
runs rounds until a search finds nothing, restarting (and waiting through vCenter) when a round
says so.

Source: `ServerSelection` 2 (ssWindowsUpdate) for 'windows-update'; for 'wsus' the policy values
`WUServer`/`WUStatusServer` (HKLM\\SOFTWARE\\Policies\\Microsoft\\Windows\\WindowsUpdate) and
`UseWUServer`=1 (its `AU` subkey) are written and `ServerSelection` 1 (ssManagedServer) is used.
The OS build before and after is read with PRE-2's command (`powershell.os_version_command`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from winnodes.render.powershell import ps_quote

POLICY_KEY = r"HKLM:\SOFTWARE\Policies\Microsoft\Windows\WindowsUpdate"
#: IUpdateSearcher.ServerSelection values (ServerSelection enumeration, wuapi.h).
SERVER_SELECTION = {"windows-update": 2, "wsus": 1}
#: OperationResultCode (wuapi.h): what IInstallationResult.ResultCode means.
RESULT_CODES = {
    0: "not started",
    1: "in progress",
    2: "succeeded",
    3: "succeeded with errors",
    4: "failed",
    5: "aborted",
}
#: HRESULTs of an unreachable update source, with what they mean (Windows Update error reference).
UNREACHABLE = {
    0x8024402C: "WU_E_PT_WINHTTP_NAME_NOT_RESOLVED: the update server's name does not resolve",
    0x80072EE2: "ERROR_INTERNET_TIMEOUT: the update server did not answer",
    0x80072EFD: "ERROR_INTERNET_CANNOT_CONNECT: the update server refused the connection",
    0x80072EE7: "ERROR_INTERNET_NAME_NOT_RESOLVED: the update server's name does not resolve",
    0x8024401C: "WU_E_PT_HTTP_STATUS_REQUEST_TIMEOUT: the update server timed out",
}


def source_policy_command(source: str, wsus_server: str | None) -> str:
    """Point Windows Update at the configured source (idempotent: values are overwritten)."""
    au = POLICY_KEY + r"\AU"
    lines = [
        f"$wu = {ps_quote(POLICY_KEY)}",
        f"$au = {ps_quote(au)}",
    ]
    if source == "wsus":
        assert wsus_server  # validated
        server = ps_quote(wsus_server)
        lines += [
            "if (-not (Test-Path -Path $wu)) { New-Item -Path $wu -Force | Out-Null }",
            "if (-not (Test-Path -Path $au)) { New-Item -Path $au -Force | Out-Null }",
            f"New-ItemProperty -Path $wu -Name WUServer -Value {server} -PropertyType String "
            "-Force | Out-Null",
            f"New-ItemProperty -Path $wu -Name WUStatusServer -Value {server} -PropertyType "
            "String -Force | Out-Null",
            "New-ItemProperty -Path $au -Name UseWUServer -Value 1 -PropertyType DWord -Force "
            "| Out-Null",
        ]
    else:  # windows-update: a WSUS policy left by someone else must not redirect the search
        lines += [
            "if (Test-Path -Path $au) { New-ItemProperty -Path $au -Name UseWUServer -Value 0 "
            "-PropertyType DWord -Force | Out-Null }",
        ]
    return "\n".join(lines)


def install_round_command(source: str) -> str:
    """One round: search, download, install; prints one JSON object (see `parse_round`)."""
    selection = SERVER_SELECTION[source]
    return "\n".join(
        [
            "$ErrorActionPreference = 'Stop'",
            "$out = @{ Found = @(); Installed = @(); RebootRequired = $false; ResultCode = 0; "
            "HResult = 0; Stage = 'search' }",
            "try {",
            "  $session = New-Object -ComObject Microsoft.Update.Session",
            "  $searcher = $session.CreateUpdateSearcher()",
            f"  $searcher.ServerSelection = {selection}",
            "  $found = $searcher.Search(\"IsInstalled=0 and Type='Software'\")",
            "  $todo = New-Object -ComObject Microsoft.Update.UpdateColl",
            "  foreach ($u in $found.Updates) {",
            "    if (-not $u.EulaAccepted) { $u.AcceptEula() }",
            "    $out.Found += (($u.KBArticleIDs | ForEach-Object { 'KB' + $_ }) -join ',')",
            "    [void]$todo.Add($u)",
            "  }",
            "  if ($todo.Count -gt 0) {",
            "    $out.Stage = 'download'",
            "    $downloader = $session.CreateUpdateDownloader()",
            "    $downloader.Updates = $todo",
            "    [void]$downloader.Download()",
            "    $out.Stage = 'install'",
            "    $installer = $session.CreateUpdateInstaller()",
            "    $installer.Updates = $todo",
            "    $result = $installer.Install()",
            "    $out.ResultCode = $result.ResultCode",
            "    $out.HResult = $result.HResult",
            "    $out.RebootRequired = $result.RebootRequired",
            "    $i = 0",
            "    foreach ($u in $todo) {",
            "      if ($result.GetUpdateResult($i).ResultCode -eq 2) {",
            "        $out.Installed += (($u.KBArticleIDs | ForEach-Object { 'KB' + $_ }) -join ',')",
            "      }",
            "      $i += 1",
            "    }",
            "  }",
            "} catch {",
            "  $out.HResult = $_.Exception.HResult",
            "  $out.Error = $_.Exception.Message",
            "}",
            "$out | ConvertTo-Json -Compress",
        ]
    )


@dataclass
class RoundResult:
    """What one round did."""

    found: list[str] = field(default_factory=list)
    installed: list[str] = field(default_factory=list)
    reboot_required: bool = False
    result_code: int = 0
    hresult: int = 0
    stage: str = "search"
    error: str = ""

    @property
    def failed(self) -> bool:
        return bool(self.hresult) or self.result_code in (3, 4, 5)

    def problem(self, source: str) -> str:
        """Why the round failed, for the error message (the HRESULT explained when known)."""
        code = self.hresult & 0xFFFFFFFF
        meaning = UNREACHABLE.get(code, "")
        text = f"Windows Update ({source}) {self.stage} failed: HRESULT 0x{code:08X}"
        if meaning:
            text += f" ({meaning}; check the guest's route/proxy to the update source)"
        if self.error:
            text += f": {self.error[:300]}"
        if self.result_code:
            text += f"; result {RESULT_CODES.get(self.result_code, self.result_code)}"
        return text

    @property
    def source_unreachable(self) -> bool:
        return (self.hresult & 0xFFFFFFFF) in UNREACHABLE


def _list(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) for v in value if v]
    return [str(value)] if value else []


def parse_round(output: str) -> RoundResult:
    """The JSON `install_round_command` printed."""
    data = json.loads(output.strip().splitlines()[-1] if output.strip() else "{}")
    return RoundResult(
        found=_list(data.get("Found")),
        installed=_list(data.get("Installed")),
        reboot_required=bool(data.get("RebootRequired")),
        result_code=int(data.get("ResultCode") or 0),
        hresult=int(data.get("HResult") or 0),
        stage=str(data.get("Stage") or "search"),
        error=str(data.get("Error") or ""),
    )
