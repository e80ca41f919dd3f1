"""Many runs: a grid swept into the store on an executor, and the learning-rate search that declares it."""
