-- Runs once, when the volume is first initialised (docker-entrypoint-initdb.d).
CREATE DATABASE mlflow;
CREATE DATABASE aianimals;
