"""dnspython adapter for DNS1: resolve `api`/`api-int` and add `api-int` with RFC 2136 + TSIG.

No Prefect here. `records` holds the pure decisions (is api-int right? which record must an
administrator add?); `client` talks DNS and maps dnspython's exceptions to `winnodes.errors`.
"""
