"""Compose-style YAML: network files, their CNI conflists, and compose projects.

PyYAML is imported only by the functions that parse files, never at package
import, so `import cnirun.compose` stays cheap.
"""
