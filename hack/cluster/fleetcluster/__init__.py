"""A single-node Kubernetes for intent-fleet's tests, assembled from binaries built by build.sh.

Layers: ``cli`` drives ``controlplane`` and ``node``, which use ``procs``, ``pki``,
``kubeconfig`` and ``hostnet``; ``settings`` and ``errors`` sit underneath everything.
"""
