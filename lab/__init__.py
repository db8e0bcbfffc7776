"""The lab: a local twin of vCenter, a Windows guest, OpenShift and DNS for testing the flows.

Nothing in the product (winnodes/, flows/, tasks/, blocks/) imports this package, and this package
imports nothing from the product: a bug shared by both would hide itself.
"""
