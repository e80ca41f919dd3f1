"""The statistics every verdict goes through: declared comparisons, their tests and intervals, exact tests, power."""
