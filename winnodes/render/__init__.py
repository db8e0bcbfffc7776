"""Pure renderers: unattend.xml, autounattend.xml + answer ISO, guest commands, MachineSet, reports.

Nothing here does I/O; each function turns typed configuration into text or bytes that an adapter
sends somewhere."""

from winnodes.render.answer_media import answer_media_files, render_answer_iso
from winnodes.render.machineset import machineset_yaml, render_machineset, workspace_from_machineset
from winnodes.render.report import StepResult, render_report
from winnodes.render.unattend import FirstLogonCommand, render_autounattend, render_unattend

__all__ = [
    "FirstLogonCommand",
    "StepResult",
    "answer_media_files",
    "machineset_yaml",
    "render_answer_iso",
    "render_autounattend",
    "render_machineset",
    "render_report",
    "render_unattend",
    "workspace_from_machineset",
]
