"""The audit's stages, each a module: prepare, defend, arm (the attacker), attack, write. Only ``audit.run``
knows their order."""
