"""kubernetes adapter: the cluster side of the procedure (PRE, PRE-3, M1, C2, C3, V1).

No Prefect here. Every public function maps `kubernetes`/urllib3 exceptions to `winnodes.errors` at
its boundary (`api.boundary`), so callers decide retry-or-fail from the exception type alone.

    api          boundary(), client_from_kubeconfig / client_from_token -> kubernetes ApiClient
    prereqs      check_prerequisites (platform vSphere, PRE-1 WMCO, PRE-4 hybrid overlay),
                 infrastructure_id (M1), ensure_key_secret (PRE-3), compute machine sets (C2)
    machinesets  get / server-side dry run / idempotent server-side apply (C3)
    wait         V1: watches on the MachineSet, its Machines, Windows Nodes and Events, with a
                 deadline; returns a snapshot the diagnosis (winnodes.render.diagnosis) reads
"""
