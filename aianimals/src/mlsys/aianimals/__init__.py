"""What the components of AIAnimals share: tables and migrations, their database, outbox
messages, the response cache, Japanese search, photo storage and password hashing."""
