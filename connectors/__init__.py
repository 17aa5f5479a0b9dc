"""Source-system connectors: one package per external system (client and local emulator)."""
