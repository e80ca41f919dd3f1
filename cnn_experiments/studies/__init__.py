"""Studies: the interface an experiment fills in, the registry, running and reporting, checks, reproduction, power."""
