"""AIAnimals search ranking jobs: features, learning to rank, evaluation, the gate."""
