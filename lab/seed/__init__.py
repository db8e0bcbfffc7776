"""What the lab's API server holds when it starts: the objects of an installed OpenShift-on-vSphere
cluster with WMCO, so the flows find the cluster as they would find a real one.

`openshift.seed_objects(...)` builds them (plain dicts, one per object, no I/O); `lab.kube` applies
them. `olm-crds.yaml` holds the only CRDs the lab writes itself (OLM stand-ins, labelled lab-made);
OpenShift's own CRDs come unmodified from the `openshift/api` repository.
"""

from pathlib import Path

SEED_DIR = Path(__file__).resolve().parent
OLM_CRDS = SEED_DIR / "olm-crds.yaml"
