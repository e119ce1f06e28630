"""Lava processes and exporters for S-TLLR networks (issue: Lava processes).

The only packages (with ``hw_tests``) that import Lava. Not implemented yet.
"""
