"""Kubeconfig files for the admin and for each component, pointing at the local apiserver."""

from __future__ import annotations

import json
import os
from pathlib import Path

from fleetcluster.pki import Pair


def write_kubeconfig(path: Path, server: str, ca: Path, client: Pair, user: str) -> Path:
    """Write a one-context kubeconfig (JSON is valid YAML, so no YAML library is needed)."""
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "intent-fleet",
                "cluster": {"server": server, "certificate-authority": str(ca)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate": str(client.cert),
                    "client-key": str(client.key),
                },
            }
        ],
        "contexts": [
            {"name": "intent-fleet", "context": {"cluster": "intent-fleet", "user": user}}
        ],
        "current-context": "intent-fleet",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(document, out, indent=2)
    return path
