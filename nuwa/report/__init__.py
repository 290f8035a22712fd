"""Reports: the experiment plan, tables, figures, claims and provenance of the reproduction."""
