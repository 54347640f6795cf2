"""The harness's one error tree: each failure names what broke and where to look."""

from __future__ import annotations


class ClusterError(Exception):
    """Base of every harness failure."""


class MissingBinaryError(ClusterError):
    """A binary the profile needs is neither built nor installed."""


class ComponentFailedError(ClusterError):
    """A component exited or never became ready; the message names its log file."""


class HostSetupError(ClusterError):
    """The host refused a network, mount or cgroup change the node profile needs."""
