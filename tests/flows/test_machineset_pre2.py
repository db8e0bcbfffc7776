"""The MachineSet flow refuses a template whose Windows build (recorded at G10) the cluster's WMCO
does not support (pure: the decision, without a cluster)."""

from __future__ import annotations

import pytest

from flows.machineset import _template_os_supported
from winnodes import errors


def test_ws2025_template_needs_wmco_10_22() -> None:
    attrs = {"winnodes.os.build": "26100.1742"}
    with pytest.raises(errors.Conflict) as info:
        _template_os_supported("golden/ws2025", attrs, "10.18.1")
    assert info.value.step_id == "PRE-2" and not info.value.transient
    assert "WMCO 10.18" in str(info.value) and "10.22" in str(info.value)
    assert "26100.1742" in _template_os_supported("golden/ws2025", attrs, "10.22.2")


def test_ws2022_template_is_supported_by_any_current_wmco() -> None:
    note = _template_os_supported("t", {"winnodes.os.build": "20348.681"}, "10.18.1")
    assert "supported by WMCO 10.18.1" in note


def test_a_template_without_provenance_is_reported_not_refused() -> None:
    assert "no recorded Windows build" in _template_os_supported("t", {}, None)
