"""AIAnimals batch jobs: dataset generation, initial load, outbox relay, search indexing."""
