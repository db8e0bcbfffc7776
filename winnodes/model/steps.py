"""The procedure's step IDs (docs/procedure.md) as one enum, so code, errors and reports name steps
the same way and a reader can check that every documented step is automated and reported."""

from __future__ import annotations

from enum import StrEnum


class StepId(StrEnum):
    """Every step of docs/procedure.md. The value is the ID as written there (e.g. "G3a")."""

    PRE1 = "PRE-1"
    PRE2 = "PRE-2"
    PRE3 = "PRE-3"
    PRE4 = "PRE-4"
    G1 = "G1"
    G2 = "G2"
    G3 = "G3"
    G3a = "G3a"
    G3b = "G3b"
    G3c = "G3c"
    G4 = "G4"
    G5 = "G5"
    G6 = "G6"
    G6u = "G6u"
    G7 = "G7"
    G8 = "G8"
    G9 = "G9"
    G10 = "G10"
    DNS1 = "DNS1"
    M1 = "M1"
    M2 = "M2"
    M3 = "M3"
    M4 = "M4"
    M5 = "M5"
    M6 = "M6"
    M7 = "M7"
    M8 = "M8"
    M9 = "M9"
    C1 = "C1"
    C2 = "C2"
    C3 = "C3"
    V1 = "V1"
    ROT1 = "ROT1"
    ROT2 = "ROT2"
    ROT3 = "ROT3"
    ROT4 = "ROT4"

    @property
    def summary(self) -> str:
        return STEP_TITLES[self]


STEP_TITLES: dict[StepId, str] = {
    StepId.PRE1: "WMCO is installed through OLM",
    StepId.PRE2: "A supported Windows Server image",
    StepId.PRE3: "SSH key pair; private key in Secret cloud-private-key",
    StepId.PRE4: "OVN-Kubernetes with hybrid overlay networking",
    StepId.G1: "Create the VM from the Windows Server ISO (hardware version 15 or later)",
    StepId.G2: "Install and configure VMware Tools (11.0.6 or later)",
    StepId.G3: "Verify the VM after the Tools installation",
    StepId.G3a: "tools.conf contains an empty exclude-nics=",
    StepId.G3b: "The VM has a valid IP address in vCenter (ipconfig agrees)",
    StepId.G3c: "The VMTools service is running",
    StepId.G4: "Install and configure the OpenSSH server",
    StepId.G5: "SSH access for the administrative user (key and ACL)",
    StepId.G6: "Container runtime per profile (Docker for ocp-4.9; none for current)",
    StepId.G6u: "Windows updates: search, install, restart until none is pending",
    StepId.G7: "Firewall rules for container logs (and metrics)",
    StepId.G8: "Clone the VM into a reusable image",
    StepId.G9: "Sysprep the clone with unattend.xml",
    StepId.G10: "Convert the powered-off VM into a template",
    StepId.DNS1: "DNS record api-int.<cluster>.<base_domain>",
    StepId.M1: "Infrastructure ID in the cluster-api-cluster labels",
    StepId.M2: "Machine set name (at most 9 characters) in the machineset labels",
    StepId.M3: "Template labels: os-id Windows, machine role and type",
    StepId.M4: "Node role label",
    StepId.M5: "providerSpec: credentials, disk, memory, CPUs, snapshot",
    StepId.M6: "VM network of the cluster's Linux compute machines",
    StepId.M7: "Full path of the Windows VM template",
    StepId.M8: "userDataSecret windows-user-data",
    StepId.M9: "workspace: datacenter, datastore, folder, resource pool, server",
    StepId.C1: "Write the MachineSet YAML",
    StepId.C2: "Inspect existing compute machine sets",
    StepId.C3: "Create the MachineSet",
    StepId.V1: "Verify the machine set is available (DESIRED = CURRENT = READY = AVAILABLE)",
    StepId.ROT1: "Point the MachineSet at the new template",
    StepId.ROT2: "Scale +1 and wait for the new Node Ready (V1)",
    StepId.ROT3: "Cordon and drain the oldest node on an older template (eviction API, PDBs)",
    StepId.ROT4: "Delete its Machine and scale back; repeat until every Machine runs the template",
}

#: The order steps run (and appear in reports) in.
GOLDEN_IMAGE_STEPS: tuple[StepId, ...] = (
    StepId.G1,
    StepId.G2,
    StepId.G3a,
    StepId.G3b,
    StepId.G3c,
    StepId.G4,
    StepId.G5,
    StepId.G6,
    StepId.G6u,
    StepId.PRE2,  # judged on the build the updates left, before anything is cloned
    StepId.G7,
    StepId.G8,
    StepId.G9,
    StepId.G10,
)
CLUSTER_PREP_STEPS: tuple[StepId, ...] = (
    StepId.PRE1,
    StepId.PRE4,
    StepId.PRE3,
    StepId.DNS1,
)
MACHINESET_STEPS: tuple[StepId, ...] = (
    StepId.M1,
    StepId.C2,
    StepId.C1,
    StepId.C3,
    StepId.V1,
)
ROTATION_STEPS: tuple[StepId, ...] = (
    StepId.ROT1,
    StepId.ROT2,
    StepId.ROT3,
    StepId.ROT4,
    StepId.G10,
)
