#!/usr/bin/env python3
"""Entry point of the cluster harness; see fleetcluster/cli.py."""

import sys

from fleetcluster.cli import main

if __name__ == "__main__":
    sys.exit(main())
