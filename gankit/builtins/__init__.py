"""gankit's builtin plugins. Each module is one plugin, written only against gankit's public API."""
