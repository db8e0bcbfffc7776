"""Access to the OpenShift cluster as a Prefect block: kubeconfig or server + token -> API client.

A block holds connection settings and builds the client, nothing else (prefect-kubernetes'
`KubernetesCredentials` shape). Exactly one way in: kubeconfig text (`SecretStr`: it usually embeds
a client key or token), a kubeconfig path on the worker, or a server URL with a bearer token
(`SecretStr`). TLS is verified by default: by the kubeconfig's CA, by `ca_cert`, or by the system
store; `insecure_skip_tls_verify` exists for throw-away labs and says so.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client as k8s
from prefect.blocks.core import Block
from pydantic import ConfigDict, Field, SecretStr, model_validator

from winnodes.cluster.api import client_from_kubeconfig, client_from_token
from winnodes.errors import ConfigError


class OpenShiftCredentials(Block):
    """Cluster access for the cluster-side steps (PRE, PRE-3, M1, C2, C3, V1).

    Example:
        ```python
        creds = OpenShiftCredentials.load("openshift")
        with creds.get_client() as api:
            ...  # a kubernetes.client.ApiClient, closed when the block exits
        ```
    """

    _block_type_name = "OpenShift Credentials"
    _block_type_slug = "winnodes-openshift-credentials"
    _description = "OpenShift API access: kubeconfig (text or path) and context, or server + token."

    model_config = ConfigDict(hide_input_in_errors=True)

    kubeconfig: SecretStr | None = Field(
        default=None,
        description="Kubeconfig file content (YAML). Secret: it usually holds a token or client key.",
    )
    kubeconfig_path: str | None = Field(
        default=None, description="Path of a kubeconfig file on the worker that runs the flow."
    )
    context: str | None = Field(
        default=None, description="Kubeconfig context to use; default: its current-context."
    )
    server: str | None = Field(
        default=None,
        description="API server URL, e.g. 'https://api.ocp.example.com:6443' (with `token`).",
    )
    token: SecretStr | None = Field(
        default=None, description="Bearer token of a cluster-admin service account or user."
    )
    ca_cert: str | None = Field(
        default=None,
        description="CA certificate (PEM text or a file path) that signed the API server's "
        "certificate, for `server` + `token`; default: the system CA store.",
    )
    https_proxy: str | None = Field(
        default=None,
        description="HTTP proxy 'host:port' between the product's workers and the API server (a "
        "kubeconfig's own `proxy-url` works too; this field overrides it).",
    )
    insecure_skip_tls_verify: bool = Field(
        default=False,
        description="DANGER: do not verify the API server's certificate (server + token only); "
        "anyone on the path can read the token. Only for throw-away labs.",
    )

    @model_validator(mode="after")
    def _check(self) -> OpenShiftCredentials:
        ways = [
            self.kubeconfig is not None,
            bool(self.kubeconfig_path),
            bool(self.server or self.token),
        ]
        if sum(ways) != 1:
            raise ValueError(
                "give exactly one of: kubeconfig (content), kubeconfig_path, or server + token"
            )
        if (self.server or self.token) and not (self.server and self.token):
            raise ValueError("server and token go together")
        if self.server and not self.server.startswith("https://"):
            raise ValueError("server must be an https:// URL")
        if self.insecure_skip_tls_verify and not self.server:
            raise ValueError("insecure_skip_tls_verify applies to server + token only")
        if self.kubeconfig is not None:
            self._kubeconfig_dict()
        return self

    def _kubeconfig_dict(self) -> dict[str, Any]:
        if self.kubeconfig is not None:
            text = self.kubeconfig.get_secret_value()
            where = "kubeconfig"
        else:
            assert self.kubeconfig_path
            try:
                text = Path(self.kubeconfig_path).expanduser().read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError(
                    f"cannot read kubeconfig_path {self.kubeconfig_path}: {exc.strerror}"
                ) from None
            where = f"kubeconfig_path {self.kubeconfig_path}"
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError:
            raise ValueError(f"{where} is not valid YAML") from None
        if not isinstance(data, dict) or "clusters" not in data:
            raise ValueError(f"{where} is not a kubeconfig (no clusters)")
        return data

    def _ca_pem(self) -> str | None:
        if not self.ca_cert:
            return None
        if "-----BEGIN" in self.ca_cert:
            return self.ca_cert
        return Path(self.ca_cert).expanduser().read_text(encoding="utf-8")

    @contextlib.contextmanager
    def get_client(self) -> Iterator[k8s.ApiClient]:
        """A `kubernetes.client.ApiClient`, closed when the block exits.

        Raises:
            ConfigError: the kubeconfig or context cannot be used.
        """
        if self.server and self.token:
            api = client_from_token(
                self.server,
                self.token.get_secret_value(),
                ca_cert_pem=self._ca_pem(),
                verify_tls=not self.insecure_skip_tls_verify,
                proxy=self.https_proxy,
            )
        else:
            api = client_from_kubeconfig(self._kubeconfig_dict(), self.context, self.https_proxy)
        try:
            yield api
        finally:
            api.close()
