"""Reports: tables, figures and provenance for the studies, the results index and the benchmarks."""
