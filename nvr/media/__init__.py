"""Media formats and protocols: no imports from the rest of nvr."""
