"""AIAnimals backend: the FastAPI /v0 API used by the Android app."""
