"""Ground helpers every stage uses (errors, atomic writes, settings, names, devices); no stage logic."""
