"""The operator's Kubernetes client against the real API server: a 401 logs in again once
(a rotated token is picked up), and no answer at all is a KubeApiError like any other."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from intent_fleet.operator.errors import KubeApiError, KubeUnreachableError
from intent_fleet.operator.kube import LEASES, KubeApi, connect
from tests.support.cluster import Cluster


async def test_a_rotated_token_is_read_again_after_a_401(
    control_plane: Cluster, namespace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kubeconfig = tmp_path / "rotating.kubeconfig"
    control_plane.with_token("an-expired-token", kubeconfig)
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    api = await connect()
    try:
        # The token is rotated on disk after the client logged in, as the kubelet does.
        token = control_plane.kubectl("create", "token", "default", "-n", namespace).stdout.strip()
        control_plane.with_token(token, kubeconfig)
        with pytest.raises(KubeApiError) as refused:
            await api.get(LEASES, namespace, "no-such-lease")
        # Authenticated now, as a service account that may not read Leases: 403, not 401.
        assert refused.value.status == 403, refused.value
        assert token in api.auth["Authorization"]

        # A login that brings nothing better: one retry, then the 401 stands.
        control_plane.with_token("still-expired", kubeconfig)
        api.auth = {"Authorization": "Bearer expired-again"}
        with pytest.raises(KubeApiError) as unauthorized:
            await api.get(LEASES, namespace, "no-such-lease")
        assert unauthorized.value.status == 401
    finally:
        await api.close()


async def test_no_answer_is_a_kube_api_error_naming_the_server() -> None:
    async with aiohttp.ClientSession() as session:
        api = KubeApi(session=session, server="http://127.0.0.1:9")
        with pytest.raises(KubeUnreachableError) as unreachable:
            await api.get(LEASES, "default", "x")
    assert isinstance(unreachable.value, KubeApiError)
    assert unreachable.value.status == 0
    assert "127.0.0.1:9 unreachable" in str(unreachable.value)
