"""Integrations of diffence-plugin with other ecosystems, installed as ``diffence_plugin.adapters``."""
