"""What a run is and where it is kept: its config, the store of finished runs, the machine, its progress."""
